# The KVM probe guest (a boot sector). Build: as --32 -o p.o kvm-probe.S && ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o kvm-probe.bin p.o
# Real mode -> 32-bit protected mode, a software interrupt through an IDT gate, iret, then
# 0x2a to the isa-debug-exit port (QEMU exits 85). Broken nested KVM fails at the int with
# "KVM internal error ... emulation failure", as real kernels do.
.code16
.globl _start
_start:
  cli
  xorw %ax, %ax
  movw %ax, %ds
  lgdtl gdtr
  movl %cr0, %eax
  orl $1, %eax
  movl %eax, %cr0
  ljmpl $0x08, $pm
.code32
pm:
  movw $0x10, %ax
  movw %ax, %ds
  movw %ax, %ss
  movw %ax, %es
  movl $0x7000, %esp
  lidtl idtr
  int $0x20
  movb $0x2a, %al
  outb %al, $0xf4
1: hlt
  jmp 1b
handler:
  iret
.align 8
gdt:
  .quad 0
  .quad 0x00cf9a000000ffff
  .quad 0x00cf92000000ffff
gdtr:
  .word 23
  .long gdt
idt20:
  .word handler
  .word 0x08
  .byte 0
  .byte 0x8e
  .word 0
idtr:
  .word 0x107
  .long idt20 - 0x100
.org 510
.byte 0x55, 0xaa
