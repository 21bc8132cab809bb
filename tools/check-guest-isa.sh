#!/usr/bin/env bash
# Fails if the test kernel uses an instruction KVM's instruction emulator
# cannot run on this project's machines (PVM: guest code is emulated): any
# SSE/AVX/x87/MMX instruction, any xmm/ymm/zmm/st/mm register, XSAVE/FXSAVE
# state instructions, cmpxchg16b.
#
# Usage: tools/check-guest-isa.sh DIR   (DIR holds testkernel.elf)
set -euo pipefail

dir=${1:?usage: $0 DIR (the directory holding testkernel.elf)}
elf="$dir/testkernel.elf"
if [ ! -f "$elf" ]; then
    echo "check-guest-isa: $elf not found (run 'make guest' first)" >&2
    exit 2
fi
objdump=${OBJDUMP:-objdump}
listing=$(mktemp)
trap 'rm -f "$listing"' EXIT
"$objdump" -d --no-show-raw-insn -M att "$elf" >"$listing"

# Registers that only SSE/AVX/x87/MMX instructions name.
regs='%(xmm|ymm|zmm)[0-9]+|%st(\([0-7]\))?|%mm[0-7]|%k[0-7]'
# Mnemonics: x87 (f...), SSE/AVX (v..., ...ps/pd/ss/sd, p... packed ops,
# movdq*, cvt*), state save/restore, ldmxcsr/stmxcsr, emms, cmpxchg16b.
mnemonics='f(add|sub|mul|div|ld|st|xch|com|ucom|init|ninit|wait|nstenv|stenv|ldenv|save|nsave|rstor|xsave|xrstor|abs|chs|sqrt|sin|cos|prem|scale|rndint|bld|bstp|ild|ist|istp|isttp|free|decstp|incstp|clex|nclex|ldcw|stcw|nstcw|stsw|nstsw|cmov|tst|xam|ld1|ldz|ldpi|ldl2e|ldl2t|ldlg2|ldln2|yl2x|yl2xp1|2xm1|ptan|patan|xtract|nop)[a-z]*|v[a-z0-9]+|[a-z]+(ps|pd|ss|sd)|movdq[au]|movq2dq|movdq2q|cvt[a-z0-9]+|p(add|sub|mul|and|andn|or|xor|cmp|shuf|unpck|sll|srl|sra|max|min|avg|sadbw|madd|ack|alignr|blend|extr|insr|movmsk|test|sign|abs|hadd|hsub|minpos|movzx|movsx)[a-z0-9]*|(ld|st)mxcsr|emms|femms|(fx|x)(save|rstor)(64)?|xsave(opt|c|s)?(64)?|xrstors?(64)?|cmpxchg16b|maskmov[a-z]*|lddqu|movnt(ps|pd|dq|i|q)|movhl?ps|movlhps|movsh?dup|movddup|shufp[sd]|unpck[hl]p[sd]|(add|sub)subp[sd]|dpp[sd]|round[ps][sd]|insertps|extractps|crc32[a-z]*|pcmpe?str[im]'

# Field 3 of an objdump -d line is the mnemonic (after address and tab).
bad=$(awk -F'\t' 'NF >= 2 && $1 ~ /^ *[0-9a-f]+:$/ { print $1 "\t" $2 }' "$listing" |
    grep -E "[[:space:]]($mnemonics)([[:space:]]|$)|$regs" || true)
# Instructions that merely look like SSE by name but are integer ones.
bad=$(printf '%s\n' "$bad" | grep -vE "[[:space:]](cmpsd|movsd|cmpsb|cmpsw|cmpsq|movsb|movsw|movsq)([[:space:]]|$)" || true)
# A cmpsd/movsd with xmm operands is SSE; the register pattern catches it.
bad2=$(awk -F'\t' 'NF >= 2 && $1 ~ /^ *[0-9a-f]+:$/ { print $1 "\t" $2 }' "$listing" |
    grep -E "[[:space:]](cmpsd|movsd)[[:space:]].*%xmm" || true)
bad=$(printf '%s\n%s\n' "$bad" "$bad2" | sed '/^$/d' | sort -u)

if [ -n "$bad" ]; then
    echo "check-guest-isa: $elf uses instructions the PVM emulator cannot run:" >&2
    printf '%s\n' "$bad" | head -40 >&2
    n=$(printf '%s\n' "$bad" | wc -l)
    echo "check-guest-isa: $n offending instruction(s)" >&2
    exit 1
fi
count=$(grep -cE '^ *[0-9a-f]+:' "$listing" || true)
echo "check-guest-isa: $elf OK ($count instructions, integer only)"
