// SPDX-License-Identifier: MIT
/*
 * sysprobe_with() (the daemon's probe: libktls's ktls_probe_with() for kTLS, then io_uring
 * and BPF) against a fake kernel: each test scripts how the fake answers (ULP missing, one
 * cipher refused, rekey EBUSY, io_uring blocked by seccomp, ...) and checks every
 * capability bit the probe reports, the exact crypto_info it passed, and that it closed
 * every socket it opened.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <linux/tls.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <liburing.h>

#include "ktlsd/probe.h"
#include "sysprobe.h"

#define NV	  KTLS_PROBE_NVERSIONS
#define NC	  KTLS_PROBE_NCIPHERS
#define MAX_FDS	  64
#define MAX_CALLS 64

/* How the fake kernel answers; zero-initialised = a 7.x kernel that supports everything. */
struct fake_kernel {
	int pair_err;
	int ulp_err;
	int tx_err[NV][NC];
	int rx_err[NV][NC];
	int second_tx_err;
	int no_pad_err;
	int uring_err;
	int defer_err;
	bool opcode_missing[IORING_OP_LAST];
	int accept_ms_res;
	int recv_ms_res;
	int bpf_err;
};

struct fake_sock {
	bool open, ulp;
	int ntx, nrx;
	uint16_t version, cipher;
};

/* One recorded TLS_TX/TLS_RX call. */
struct tls_call {
	int name;
	uint16_t version, cipher;
	socklen_t len;
};

static struct fake_kernel k;
static struct fake_sock socks[MAX_FDS];
static int next_fd;
static struct tls_call calls[MAX_CALLS];
static int ncalls, nulp_calls, nopcode_calls, nbpf_calls, bpf_map_type;

static const uint16_t cipher_ids[NC] = { TLS_CIPHER_AES_GCM_128, TLS_CIPHER_AES_GCM_256,
					 TLS_CIPHER_CHACHA20_POLY1305 };
static const socklen_t cipher_len[NC] = { sizeof(struct tls12_crypto_info_aes_gcm_128),
					  sizeof(struct tls12_crypto_info_aes_gcm_256),
					  sizeof(struct tls12_crypto_info_chacha20_poly1305) };

static int version_index(uint16_t v)
{
	return v == TLS_1_3_VERSION   ? KTLS_PROBE_TLS13
	       : v == TLS_1_2_VERSION ? KTLS_PROBE_TLS12
				      : -1;
}

static int cipher_index(uint16_t c)
{
	for (int i = 0; i < NC; i++)
		if (cipher_ids[i] == c)
			return i;
	return -1;
}

static int fake_tcp_pair(int ret_fds[2])
{
	if (k.pair_err)
		return -k.pair_err;
	assert_true(next_fd + 2 <= MAX_FDS);
	for (int i = 0; i < 2; i++) {
		memset(&socks[next_fd], 0, sizeof(socks[next_fd]));
		socks[next_fd].open = true;
		ret_fds[i] = next_fd++;
	}
	return 0;
}

static void fake_close(int fd)
{
	assert_true(fd >= 0 && fd < next_fd);
	assert_true(socks[fd].open);
	socks[fd].open = false;
}

/* Like the kernel: exact struct size per cipher, TX and RX must match, one install each. */
static int fake_tls_opt(struct fake_sock *s, int name, const void *val, socklen_t len)
{
	const struct tls_crypto_info *info = val;
	int v, c, err;

	assert_true(len >= sizeof(*info));
	v = version_index(info->version);
	c = cipher_index(info->cipher_type);
	assert_true(ncalls < MAX_CALLS);
	calls[ncalls++] = (struct tls_call){ name, info->version, info->cipher_type, len };
	if (!s->ulp)
		return -ENOPROTOOPT;
	if (v < 0 || c < 0 || len != cipher_len[c])
		return -EINVAL;
	if ((s->ntx || s->nrx) && (s->version != info->version || s->cipher != info->cipher_type))
		return -EINVAL;
	if (name == TLS_TX && s->ntx) {
		if (k.second_tx_err)
			return -k.second_tx_err;
	} else if (name == TLS_RX && s->nrx) {
		return -EBUSY;
	} else {
		err = name == TLS_TX ? k.tx_err[v][c] : k.rx_err[v][c];
		if (err)
			return -err;
	}
	s->version = info->version;
	s->cipher = info->cipher_type;
	if (name == TLS_TX)
		s->ntx++;
	else
		s->nrx++;
	return 0;
}

static int fake_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	struct fake_sock *s;

	assert_true(fd >= 0 && fd < next_fd);
	s = &socks[fd];
	assert_true(s->open);
	if (level == SOL_TCP && name == TCP_ULP) {
		nulp_calls++;
		assert_int_equal(len, 3);
		assert_memory_equal(val, "tls", 3);
		if (k.ulp_err)
			return -k.ulp_err;
		if (s->ulp)
			return -EEXIST;
		s->ulp = true;
		return 0;
	}
	assert_int_equal(level, SOL_TLS);
	if (name == TLS_TX || name == TLS_RX)
		return fake_tls_opt(s, name, val, len);
	if (name == TLS_RX_EXPECT_NO_PAD) {
		assert_int_equal(len, sizeof(int));
		assert_int_equal(*(const int *)val, 1);
		if (!s->nrx || s->version != TLS_1_3_VERSION)
			return -EINVAL;
		return k.no_pad_err ? -k.no_pad_err : 0;
	}
	fail_msg("unexpected SOL_TLS option %d", name);
	return -EINVAL;
}

static int fake_uring_setup(unsigned int flags)
{
	if (k.uring_err)
		return -k.uring_err;
	if (flags & IORING_SETUP_DEFER_TASKRUN) {
		/* The kernel refuses DEFER_TASKRUN without SINGLE_ISSUER. */
		assert_true(flags & IORING_SETUP_SINGLE_ISSUER);
		return k.defer_err ? -k.defer_err : 0;
	}
	assert_int_equal(flags, 0);
	return 0;
}

static int fake_uring_opcodes(bool *ret_supported, size_t n)
{
	nopcode_calls++;
	assert_true(!k.uring_err);
	for (size_t op = 0; op < n; op++)
		ret_supported[op] = op < IORING_OP_LAST && !k.opcode_missing[op];
	return 0;
}

static int fake_accept_ms(void)
{
	assert_true(!k.uring_err);
	return k.accept_ms_res;
}

static int fake_recv_ms(void)
{
	assert_true(!k.uring_err);
	return k.recv_ms_res;
}

static int fake_bpf_map_create(int type, unsigned int key_size, unsigned int value_size,
			       unsigned int max_entries)
{
	nbpf_calls++;
	bpf_map_type = type;
	assert_int_equal(key_size, 4);
	assert_true(value_size == 4 || value_size == 8);
	assert_true(max_entries >= 1);
	if (k.bpf_err)
		return -k.bpf_err;
	assert_true(next_fd < MAX_FDS);
	memset(&socks[next_fd], 0, sizeof(socks[next_fd]));
	socks[next_fd].open = true;
	return next_fd++;
}

static const struct ktls_probe_ops fake_kops = {
	.tcp_pair = fake_tcp_pair,
	.setsockopt = fake_setsockopt,
	.close = fake_close,
};

static const struct sysprobe_ops fake_ops = {
	.close = fake_close,
	.uring_setup = fake_uring_setup,
	.uring_opcodes = fake_uring_opcodes,
	.uring_accept_multishot = fake_accept_ms,
	.uring_recv_multishot = fake_recv_ms,
	.bpf_map_create = fake_bpf_map_create,
};

static int setup(void **state)
{
	memset(&k, 0, sizeof(k));
	memset(socks, 0, sizeof(socks));
	memset(calls, 0, sizeof(calls));
	next_fd = ncalls = nulp_calls = nopcode_calls = nbpf_calls = 0;
	bpf_map_type = -1;
	return 0;
}

static void assert_all_closed(void)
{
	for (int fd = 0; fd < next_fd; fd++)
		if (socks[fd].open)
			fail_msg("fd %d left open", fd);
}

static struct sys_caps run_probe(void)
{
	struct sys_caps caps;

	memset(&caps, 0xa5, sizeof(caps));
	assert_int_equal(sysprobe_with(&fake_kops, &fake_ops, &caps), 0);
	assert_all_closed();
	return caps;
}

static void assert_cells(const struct sys_caps *c, bool tx, bool rx)
{
	for (int v = 0; v < NV; v++) {
		for (int i = 0; i < NC; i++) {
			assert_int_equal(c->ktls.tx[v][i], tx);
			assert_int_equal(c->ktls.rx[v][i], rx);
		}
	}
}

static void test_everything_supported(void **state)
{
	struct sys_caps c = run_probe();

	assert_true(c.ktls.ulp);
	assert_int_equal(c.ktls.ulp_err, 0);
	assert_cells(&c, true, true);
	assert_true(c.ktls.rekey);
	assert_int_equal(c.ktls.rekey_err, 0);
	assert_true(c.ktls.rx_expect_no_pad);
	assert_true(c.uring);
	assert_int_equal(c.uring_err, 0);
	assert_true(c.uring_accept_multishot);
	assert_true(c.uring_splice);
	assert_true(c.uring_recv_multishot);
	assert_true(c.uring_setup_defer_taskrun);
	assert_true(c.bpf_sockmap);
	assert_int_equal(c.bpf_err, 0);
	assert_int_equal(bpf_map_type, BPF_MAP_TYPE_SOCKMAP);
}

/* Every cell installs TX then RX with the exact struct for its cipher, then one rekey. */
static void test_exact_crypto_info(void **state)
{
	int n = 0;

	run_probe();
	for (int v = 0; v < NV; v++) {
		uint16_t ver = v == KTLS_PROBE_TLS13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;

		for (int i = 0; i < NC; i++) {
			for (int name = TLS_TX; name <= TLS_RX; name++) {
				assert_int_equal(calls[n].name, name);
				assert_int_equal(calls[n].version, ver);
				assert_int_equal(calls[n].cipher, cipher_ids[i]);
				assert_int_equal(calls[n].len, cipher_len[i]);
				n++;
			}
			/* The rekey try follows the first TLS 1.3 cell on the same socket. */
			if (v == KTLS_PROBE_TLS13 && i == 0) {
				assert_int_equal(calls[n].name, TLS_TX);
				assert_int_equal(calls[n].version, TLS_1_3_VERSION);
				assert_int_equal(calls[n].cipher, cipher_ids[0]);
				n++;
			}
		}
	}
	assert_int_equal(ncalls, n);
	assert_int_equal(ncalls, NV * NC * 2 + 1);
	/* One ULP check plus one per cell, each on its own fresh socket. */
	assert_int_equal(nulp_calls, 1 + NV * NC);
}

static void test_no_ulp(void **state)
{
	struct sys_caps c;

	k.ulp_err = ENOENT;
	c = run_probe();
	assert_false(c.ktls.ulp);
	assert_int_equal(c.ktls.ulp_err, ENOENT);
	assert_cells(&c, false, false);
	assert_false(c.ktls.rekey);
	assert_int_equal(c.ktls.rekey_err, ENOENT);
	assert_false(c.ktls.rx_expect_no_pad);
	/* No crypto_info is offered to a kernel without the ULP. */
	assert_int_equal(ncalls, 0);
	assert_int_equal(nulp_calls, 1);
	/* The rest of the probe still runs. */
	assert_true(c.uring);
	assert_true(c.uring_accept_multishot);
	assert_true(c.bpf_sockmap);
}

static void test_one_cell_refused(void **state)
{
	struct sys_caps c;

	k.tx_err[KTLS_PROBE_TLS13][KTLS_PROBE_CHACHA20_POLY1305] = EINVAL;
	c = run_probe();
	assert_true(c.ktls.ulp);
	for (int v = 0; v < NV; v++) {
		for (int i = 0; i < NC; i++) {
			bool off = v == KTLS_PROBE_TLS13 && i == KTLS_PROBE_CHACHA20_POLY1305;

			assert_int_equal(c.ktls.tx[v][i], !off);
			assert_true(c.ktls.rx[v][i]);
		}
	}
	assert_true(c.ktls.rekey);
}

static void test_rx_refused_everywhere(void **state)
{
	struct sys_caps c;

	for (int v = 0; v < NV; v++)
		for (int i = 0; i < NC; i++)
			k.rx_err[v][i] = ENOPROTOOPT;
	c = run_probe();
	assert_cells(&c, true, false);
	/* Rekey and NO_PAD are only asked on a socket with both directions installed. */
	assert_false(c.ktls.rekey);
	assert_int_equal(c.ktls.rekey_err, EOPNOTSUPP);
	assert_false(c.ktls.rx_expect_no_pad);
}

static void test_rekey_ebusy(void **state)
{
	struct sys_caps c;

	k.second_tx_err = EBUSY;
	c = run_probe();
	assert_cells(&c, true, true);
	assert_false(c.ktls.rekey);
	assert_int_equal(c.ktls.rekey_err, EBUSY);
	assert_true(c.ktls.rx_expect_no_pad);
}

/* If TLS 1.3 AES-128 is missing the rekey question moves to the next TLS 1.3 cipher. */
static void test_rekey_on_next_tls13_cipher(void **state)
{
	struct sys_caps c;

	k.tx_err[KTLS_PROBE_TLS13][KTLS_PROBE_AES_GCM_128] = EINVAL;
	c = run_probe();
	assert_false(c.ktls.tx[KTLS_PROBE_TLS13][KTLS_PROBE_AES_GCM_128]);
	assert_true(c.ktls.rekey);
	assert_int_equal(calls[NC * 2 + 2 + 2].name, TLS_TX);
	assert_int_equal(calls[NC * 2 + 2 + 2].cipher, TLS_CIPHER_AES_GCM_256);
}

static void test_no_pad_refused(void **state)
{
	struct sys_caps c;

	k.no_pad_err = ENOPROTOOPT;
	c = run_probe();
	assert_false(c.ktls.rx_expect_no_pad);
	assert_true(c.ktls.rekey);
	assert_cells(&c, true, true);
}

static void test_uring_blocked(void **state)
{
	struct sys_caps c;

	k.uring_err = EPERM;
	c = run_probe();
	assert_false(c.uring);
	assert_int_equal(c.uring_err, EPERM);
	assert_false(c.uring_accept_multishot);
	assert_false(c.uring_splice);
	assert_false(c.uring_recv_multishot);
	assert_false(c.uring_setup_defer_taskrun);
	assert_int_equal(nopcode_calls, 0);
	assert_true(c.ktls.ulp);
	assert_true(c.bpf_sockmap);
}

static void test_uring_old_kernel(void **state)
{
	struct sys_caps c;

	k.defer_err = EINVAL;
	k.accept_ms_res = -EINVAL;
	k.recv_ms_res = -EINVAL;
	k.opcode_missing[IORING_OP_SPLICE] = true;
	c = run_probe();
	assert_true(c.uring);
	assert_int_equal(c.uring_err, 0);
	assert_false(c.uring_setup_defer_taskrun);
	assert_false(c.uring_accept_multishot);
	assert_false(c.uring_splice);
	assert_false(c.uring_recv_multishot);
}

static void test_uring_only_recv_multishot_missing(void **state)
{
	struct sys_caps c;

	k.recv_ms_res = -EINVAL;
	c = run_probe();
	assert_true(c.uring_accept_multishot);
	assert_true(c.uring_splice);
	assert_false(c.uring_recv_multishot);
	assert_true(c.uring_setup_defer_taskrun);
}

static void test_bpf_denied(void **state)
{
	struct sys_caps c;

	k.bpf_err = EPERM;
	c = run_probe();
	assert_false(c.bpf_sockmap);
	assert_int_equal(c.bpf_err, EPERM);
	assert_int_equal(nbpf_calls, 1);
	assert_int_equal(bpf_map_type, BPF_MAP_TYPE_SOCKMAP);
}

/* Only a probe that could not run fails; the out-parameter is then untouched. */
static void test_no_loopback_fails(void **state)
{
	struct sys_caps c, before;

	k.pair_err = EMFILE;
	memset(&c, 0x5a, sizeof(c));
	before = c;
	assert_int_equal(sysprobe_with(&fake_kops, &fake_ops, &c), -EMFILE);
	assert_memory_equal(&c, &before, sizeof(c));
}

/* libktls's probe on its own: the kTLS answers of the whole probe, no io_uring or BPF call. */
static void test_ktls_probe_alone(void **state)
{
	struct ktls_caps alone, before;
	struct sys_caps all;

	k.tx_err[KTLS_PROBE_TLS12][KTLS_PROBE_AES_GCM_256] = EINVAL;
	k.second_tx_err = EBUSY;
	all = run_probe();
	setup(state);
	k.tx_err[KTLS_PROBE_TLS12][KTLS_PROBE_AES_GCM_256] = EINVAL;
	k.second_tx_err = EBUSY;
	k.uring_err = EPERM; /* would trip the fakes' asserts if io_uring were asked */
	memset(&alone, 0xa5, sizeof(alone));
	assert_int_equal(ktls_probe_with(&fake_kops, &alone), 0);
	assert_all_closed();
	assert_int_equal(alone.ulp, all.ktls.ulp);
	assert_int_equal(alone.ulp_err, all.ktls.ulp_err);
	assert_memory_equal(alone.tx, all.ktls.tx, sizeof(alone.tx));
	assert_memory_equal(alone.rx, all.ktls.rx, sizeof(alone.rx));
	assert_false(alone.tx[KTLS_PROBE_TLS12][KTLS_PROBE_AES_GCM_256]);
	assert_int_equal(alone.rekey, all.ktls.rekey);
	assert_int_equal(alone.rekey_err, EBUSY);
	assert_int_equal(alone.rx_expect_no_pad, all.ktls.rx_expect_no_pad);
	assert_int_equal(nopcode_calls, 0);
	assert_int_equal(nbpf_calls, 0);

	k.pair_err = EMFILE;
	memset(&alone, 0x5a, sizeof(alone));
	before = alone;
	assert_int_equal(ktls_probe_with(&fake_kops, &alone), -EMFILE);
	assert_memory_equal(&alone, &before, sizeof(alone));
}

static void test_names(void **state)
{
	assert_string_equal(ktls_probe_version_name(KTLS_PROBE_TLS12), "tls12");
	assert_string_equal(ktls_probe_version_name(KTLS_PROBE_TLS13), "tls13");
	assert_string_equal(ktls_probe_cipher_name(KTLS_PROBE_AES_GCM_128), "aes_gcm_128");
	assert_string_equal(ktls_probe_cipher_name(KTLS_PROBE_AES_GCM_256), "aes_gcm_256");
	assert_string_equal(ktls_probe_cipher_name(KTLS_PROBE_CHACHA20_POLY1305),
			    "chacha20_poly1305");
	assert_string_equal(ktls_probe_cipher_name(NC), "unknown");
}

/* The real kernel: whatever it supports, the probe runs and its answers are consistent. */
static void test_real_kernel_consistent(void **state)
{
	struct ktls_caps alone;
	struct sys_caps c;

	assert_int_equal(sysprobe(&c), 0);
	assert_int_equal(ktls_probe(&alone), 0);
	assert_int_equal(alone.ulp, c.ktls.ulp);
	assert_int_equal(alone.rekey, c.ktls.rekey);
	if (!c.ktls.ulp) {
		assert_true(c.ktls.ulp_err != 0);
		assert_cells(&c, false, false);
		assert_false(c.ktls.rekey);
	}
	if (!c.uring)
		assert_true(c.uring_err != 0);
	if (!c.bpf_sockmap)
		assert_true(c.bpf_err != 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_everything_supported, setup),
		cmocka_unit_test_setup(test_exact_crypto_info, setup),
		cmocka_unit_test_setup(test_no_ulp, setup),
		cmocka_unit_test_setup(test_one_cell_refused, setup),
		cmocka_unit_test_setup(test_rx_refused_everywhere, setup),
		cmocka_unit_test_setup(test_rekey_ebusy, setup),
		cmocka_unit_test_setup(test_rekey_on_next_tls13_cipher, setup),
		cmocka_unit_test_setup(test_no_pad_refused, setup),
		cmocka_unit_test_setup(test_uring_blocked, setup),
		cmocka_unit_test_setup(test_uring_old_kernel, setup),
		cmocka_unit_test_setup(test_uring_only_recv_multishot_missing, setup),
		cmocka_unit_test_setup(test_bpf_denied, setup),
		cmocka_unit_test_setup(test_no_loopback_fails, setup),
		cmocka_unit_test_setup(test_ktls_probe_alone, setup),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_real_kernel_consistent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
