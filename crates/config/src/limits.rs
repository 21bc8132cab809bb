//! The documented limits of a StratoVirt microVM (seed 004, "Specifications").
//! They are enforced in one place, `VmConfig::validate`; the QMP hot-plug code
//! can use the same numbers.

/// Fewest vCPUs.
pub const MIN_VCPUS: u64 = 1;
/// Most vCPUs.
pub const MAX_VCPUS: u64 = 254;
/// Smallest guest memory: 128 MiB.
pub const MIN_MEM_SIZE: u64 = 128 << 20;
/// Largest guest memory: 512 GiB.
pub const MAX_MEM_SIZE: u64 = 512 << 30;
/// Guest memory must be a whole number of 4 KiB pages (KVM maps pages).
pub const MEM_ALIGN: u64 = 4 << 10;
/// Most virtio-blk disks, hot-plugged ones included.
pub const MAX_DRIVES: usize = 6;
/// Most virtio-net NICs, hot-plugged ones included.
pub const MAX_NETS: usize = 2;
/// Longest VM name, in characters (the shortest is 1).
pub const MAX_NAME_LEN: usize = 255;
/// Smallest vsock guest CID (0, 1 and 2 are reserved).
pub const MIN_GUEST_CID: u64 = 3;
/// Largest vsock guest CID (`u32::MAX` is `VMADDR_CID_ANY`).
pub const MAX_GUEST_CID: u64 = u32::MAX as u64 - 1;
/// Devices besides disks and NICs (console, vsock, balloon): two on x86_64, twelve on AArch64.
#[cfg(target_arch = "aarch64")]
pub const MAX_OTHER_DEVICES: usize = 12;
/// Devices besides disks and NICs (console, vsock, balloon): two on x86_64, twelve on AArch64.
#[cfg(not(target_arch = "aarch64"))]
pub const MAX_OTHER_DEVICES: usize = 2;
/// Longest unix socket path (`sun_path` is 108 bytes with its NUL).
pub const MAX_SOCKET_PATH_LEN: usize = 107;
/// Longest userspace vsock socket path: guest connections to host port P go to
/// `<path>_P`, which must still fit in `sun_path` with the longest port (`_4294967295`).
pub const MAX_VSOCK_PATH_LEN: usize = MAX_SOCKET_PATH_LEN - 11;
/// Longest virtio-blk serial number (`VIRTIO_BLK_ID_BYTES`).
pub const MAX_DRIVE_SERIAL_LEN: usize = 20;
/// Longest host network interface name (`IFNAMSIZ` less the NUL).
pub const MAX_IFNAME_LEN: usize = 15;
/// Highest vCPU APIC id: the IOAPIC takes the next id, and 0xff is the broadcast id.
pub const MAX_APIC_ID: u32 = 253;
