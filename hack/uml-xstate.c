/*
 * uml-xstate.so: lets Debian 12's User-Mode Linux (6.1) run on a host whose XSAVE area is larger
 * than the 832 bytes (x87, SSE, AVX) that kernel was built to save. hack/dmkernel.sh preloads it
 * into linux.uml.
 *
 * Why: UML switches its processes' floating-point state with ptrace(PTRACE_{GET,SET}REGSET,
 * NT_X86_XSTATE) on an 832-byte buffer. A host kernel accepts a SETREGSET only with its whole
 * XSAVE area (its fpu_user_cfg.max_size: 2696 bytes with AVX-512, 11008 with AMX), so on such a
 * CPU the first SETREGSET fails with EFAULT and UML panics ("ptrace set fp regs failed, errno = 14",
 * then "Attempted to kill init!"). Newer UML kernels ask the host for the size; 6.1 does not.
 *
 * How: a short GETREGSET reads the whole area into a copy kept for the caller's buffer (UML keeps
 * one buffer per task) and hands UML its first bytes; a short SETREGSET writes that whole copy back
 * with UML's bytes laid over it. So every task gets back its own AVX-512/AMX state too, not just
 * the part UML knows. Where the area is no larger than UML's buffer this changes nothing.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#define NT_X86_XSTATE 0x202
#define HEADER_OFFSET 512          /* the XSAVE header follows the 512-byte legacy (FXSAVE) area */
#define HEADER_END (HEADER_OFFSET + 64)
#define UML_FEATURES UINT64_C(0x7) /* x87, SSE, AVX: the components inside UML's 832 bytes */
#define MAX_AREA 65536
#define SLOTS 4096                 /* tasks whose whole area is kept; more fall back to the host's */

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

struct slot {
	const void *owner;   /* UML's buffer for one task */
	pid_t pid;           /* the host process it was last read from; 0: never read */
	unsigned char *area; /* that task's whole XSAVE area, as last read from the host */
};

static ptrace_fn real_ptrace;
static size_t host_size; /* the host's XSAVE area; 0 until the first NT_X86_XSTATE call */
static struct slot slots[SLOTS];
static unsigned char scratch[MAX_AREA];

static long call(int request, pid_t pid, void *addr, void *data)
{
	if (!real_ptrace)
		real_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
	return real_ptrace(request, pid, addr, data);
}

/* The host's XSAVE size, read once from the tracee: a GETREGSET reports how much it filled. */
static size_t area_size(pid_t pid)
{
	if (!host_size) {
		struct iovec iov = { scratch, sizeof(scratch) };
		if (call(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) == 0)
			host_size = iov.iov_len;
	}
	return host_size;
}

/* The slot kept for `owner`, made on first use; NULL if the table is full or memory ran out. */
static struct slot *slot_for(const void *owner)
{
	size_t i = ((uintptr_t)owner >> 4) % SLOTS;
	for (size_t n = 0; n < SLOTS; n++, i = (i + 1) % SLOTS) {
		if (slots[i].owner == owner)
			return &slots[i];
		if (!slots[i].owner) {
			unsigned char *area = malloc(host_size);
			if (!area)
				return NULL;
			slots[i] = (struct slot){ owner, 0, area };
			return &slots[i];
		}
	}
	return NULL;
}

static long get_short(pid_t pid, struct iovec *iov)
{
	struct slot *s = slot_for(iov->iov_base);
	unsigned char *area = s ? s->area : scratch;
	struct iovec whole = { area, host_size };
	if (call(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &whole) < 0)
		return -1;
	if (s)
		s->pid = pid;
	memcpy(iov->iov_base, area, iov->iov_len);
	return 0;
}

static long set_short(pid_t pid, const struct iovec *iov)
{
	struct slot *s = slot_for(iov->iov_base);
	/* a copy read from another process (a buffer on UML's stack) does not belong to this one */
	unsigned char *area = s && s->pid == pid ? s->area : scratch;
	if (area == scratch) { /* nothing kept for this buffer: the host's current state stands in */
		struct iovec whole = { scratch, host_size };
		if (call(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &whole) < 0)
			return -1;
	}
	uint64_t kept, given;
	memcpy(&kept, area + HEADER_OFFSET, sizeof(kept));
	memcpy(&given, (const unsigned char *)iov->iov_base + HEADER_OFFSET, sizeof(given));
	memcpy(area, iov->iov_base, iov->iov_len);
	/* UML decides the components it holds; the kept copy decides the rest */
	uint64_t features = (given & UML_FEATURES) | (kept & ~UML_FEATURES);
	memcpy(area + HEADER_OFFSET, &features, sizeof(features));
	struct iovec whole = { area, host_size };
	return call(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &whole);
}

long ptrace(enum __ptrace_request request, ...)
{
	va_list ap;
	va_start(ap, request);
	pid_t pid = va_arg(ap, pid_t);
	void *addr = va_arg(ap, void *);
	void *data = va_arg(ap, void *);
	va_end(ap);

	if ((request == PTRACE_GETREGSET || request == PTRACE_SETREGSET) && addr == (void *)NT_X86_XSTATE) {
		struct iovec *iov = data;
		size_t size = area_size(pid);
		if (size > iov->iov_len && size <= MAX_AREA && iov->iov_len >= HEADER_END)
			return request == PTRACE_GETREGSET ? get_short(pid, iov) : set_short(pid, iov);
	}
	return call(request, pid, addr, data);
}
