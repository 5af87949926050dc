/* Inside User-Mode Linux: do vector registers keep their values while the kernel switches between
 * threads of one process and between processes? Three threads in each of two processes hold distinct
 * values in the widest vector register the CPU has (zmm17 with AVX-512, the upper half of ymm7 with
 * AVX2, else xmm7), yield, and read them back. Prints what it checked; exits 1 if a value changed. */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROUNDS 100000

__attribute__((target("avx512f"))) static int zmm_kept(uint64_t v)
{
	for (int i = 0; i < ROUNDS; i++) {
		uint64_t low, high;
		__asm__ volatile("vpbroadcastq %0, %%zmm17" : : "r"(v) : "xmm17");
		sched_yield();
		__asm__ volatile("vmovq %%xmm17, %0\n\tvextracti64x4 $1, %%zmm17, %%ymm18\n\tvmovq %%xmm18, %1"
				 : "=r"(low), "=r"(high) : : "xmm17", "xmm18");
		if (low != v || high != v)
			return 0;
	}
	return 1;
}

__attribute__((target("avx2"))) static int ymm_kept(uint64_t v)
{
	for (int i = 0; i < ROUNDS; i++) {
		uint64_t high;
		__asm__ volatile("vmovq %0, %%xmm7\n\tvpbroadcastq %%xmm7, %%ymm7" : : "r"(v) : "xmm7");
		sched_yield();
		__asm__ volatile("vextracti128 $1, %%ymm7, %%xmm6\n\tvmovq %%xmm6, %0" : "=r"(high) : : "xmm6", "xmm7");
		if (high != v)
			return 0;
	}
	return 1;
}

static int xmm_kept(uint64_t v)
{
	for (int i = 0; i < ROUNDS; i++) {
		uint64_t got;
		__asm__ volatile("movq %0, %%xmm7" : : "r"(v) : "xmm7");
		sched_yield();
		__asm__ volatile("movq %%xmm7, %0" : "=r"(got) : : "xmm7");
		if (got != v)
			return 0;
	}
	return 1;
}

static const char *kind;
static int (*kept)(uint64_t);

static void *hold(void *value)
{
	return (void *)(intptr_t)kept((uint64_t)(uintptr_t)value);
}

static int threads_keep(uint64_t base)
{
	pthread_t t[3];
	int ok = 1;
	for (uint64_t i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, hold, (void *)(uintptr_t)(base * (i + 1)));
	for (int i = 0; i < 3; i++) {
		void *r;
		pthread_join(t[i], &r);
		ok &= (int)(intptr_t)r;
	}
	return ok;
}

int main(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		kind = "zmm", kept = zmm_kept;
	else if (__builtin_cpu_supports("avx2"))
		kind = "ymm", kept = ymm_kept;
	else
		kind = "xmm", kept = xmm_kept;
	pid_t child = fork();
	int ok = threads_keep(child ? 0x1111111111111111ULL : 0x0101010101010101ULL);
	if (child == 0)
		_exit(ok ? 0 : 1);
	int status;
	waitpid(child, &status, 0);
	ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
	printf("%s registers %s\n", kind, ok ? "kept" : "changed");
	return ok ? 0 : 1;
}
