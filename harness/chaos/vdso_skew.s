    .intel_syntax noprefix
    .text
# clock_gettime(edi=clockid, rsi=ts) at 0x00
cg:
    endbr64
    mov eax, 228
    syscall
    test rax, rax
    jnz 1f
    cmp edi, 63
    ja 1f
    mov rax, [rip + mask]
    bt rax, rdi
    jnc 2f
    mov rax, [rip + sec]
    add [rsi], rax
    mov rax, [rip + nsec]
    add rax, [rsi + 8]
    cmp rax, 1000000000
    jl 3f
    sub rax, 1000000000
    inc qword ptr [rsi]
3:  mov [rsi + 8], rax
2:  xor eax, eax
1:  ret
# gettimeofday(rdi=tv, rsi=tz) at 0x80
    .org 0x80, 0xcc
gtod:
    endbr64
    mov eax, 96
    syscall
    test rax, rax
    jnz 1f
    test rdi, rdi
    jz 1f
    mov rax, [rip + mask]
    test al, 1
    jz 2f
    mov rax, [rip + sec]
    add [rdi], rax
    mov rax, [rip + usec]
    add rax, [rdi + 8]
    cmp rax, 1000000
    jl 3f
    sub rax, 1000000
    inc qword ptr [rdi]
3:  mov [rdi + 8], rax
2:  xor eax, eax
1:  ret
# time(rdi=t) at 0x100: clock_gettime(CLOCK_REALTIME) on the stack, shifted, seconds
    .org 0x100, 0xcc
tm:
    endbr64
    push rdi
    sub rsp, 16
    mov rsi, rsp
    xor edi, edi
    mov eax, 228
    syscall
    mov rax, [rsp]
    mov rcx, [rip + mask]
    test cl, 1
    jz 2f
    add rax, [rip + sec]
    mov rcx, [rip + nsec]
    add rcx, [rsp + 8]
    cmp rcx, 1000000000
    jl 2f
    inc rax
2:  add rsp, 16
    pop rdi
    test rdi, rdi
    jz 1f
    mov [rdi], rax
1:  ret
    .org 0x800, 0xcc
sec:  .quad 0
nsec: .quad 0
mask: .quad 0
usec: .quad 0
