//! How a guest Linux kernel learns about a virtio-mmio device without a device tree or ACPI:
//! one `virtio_mmio.device=<size>@<base>:<irq>` entry per transport on the kernel command line
//! (drivers/virtio/virtio_mmio.c, parsed with `memparse`).

/// The kernel command-line entry for a transport of `size` bytes at `base` on `irq`, e.g.
/// `virtio_mmio.device=4K@0xd0000000:5`.
pub fn mmio_cmdline_entry(base: u64, size: u64, irq: u32) -> String {
    let size = if size != 0 && size.is_multiple_of(1024) {
        format!("{}K", size / 1024)
    } else {
        size.to_string()
    };
    format!("virtio_mmio.device={size}@0x{base:x}:{irq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_linux_expects() {
        assert_eq!(
            mmio_cmdline_entry(0xd000_0000, 0x1000, 5),
            "virtio_mmio.device=4K@0xd0000000:5"
        );
        assert_eq!(
            mmio_cmdline_entry(0xd000_1000, 0x200, 12),
            "virtio_mmio.device=512@0xd0001000:12"
        );
    }
}
