# KVM probe ROM: real mode -> protected mode -> long mode (paging on), then out 0xf4.
# Assembled for a 64 KiB BIOS mapped at 0xF0000 (and at 0xFFFF0000).
        .code16
        .org 0
start16:
        cli
        xorw %ax, %ax
        movw %ax, %ss
        movw $0xf000, %ax
        movw %ax, %ds
        lgdtl %ds:(gdt_desc)
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        ljmpl $0x08, $(0xf0000 + pm32)
        .code32
pm32:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        # page tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD): identity-map 2 MiB
        movl $0x1000, %edi
        xorl %eax, %eax
        movl $(3 * 1024), %ecx
        rep stosl
        movl $0x2003, 0x1000
        movl $0x3003, 0x2000
        movl $0x83, 0x3000
        movl %cr4, %eax
        orl $0x20, %eax
        movl %eax, %cr4
        movl $0x1000, %eax
        movl %eax, %cr3
        movl $0xc0000080, %ecx
        rdmsr
        orl $0x100, %eax
        wrmsr
        movl %cr0, %eax
        orl $0x80000000, %eax
        movl %eax, %cr0
        ljmpl $0x18, $(0xf0000 + lm64)
        .code64
lm64:
        movb $1, %al
        outb %al, $0xf4
1:      hlt
        jmp 1b
        .p2align 3
gdt:
        .quad 0
        .quad 0x00cf9a000000ffff   # 0x08 code32
        .quad 0x00cf92000000ffff   # 0x10 data
        .quad 0x00af9a000000ffff   # 0x18 code64
gdt_desc:
        .word gdt_desc - gdt - 1
        .long 0xf0000 + gdt
        .org 0xfff0
reset:
        .code16
        ljmpw $0xf000, $start16
        .org 0x10000
