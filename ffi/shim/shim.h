/*
 * dialgate C shim: out-of-line copies of DPDK's static inline functions.
 *
 * bindgen cannot bind `static inline` functions (they have no symbol), so each one the Rust side
 * needs is wrapped here by a tiny exported function with a `dg_` prefix. The shim contains no
 * logic of its own: every function calls exactly one DPDK inline (or reads one field through a
 * DPDK accessor macro), so behaviour is DPDK's.
 */
#ifndef DIALGATE_SHIM_H
#define DIALGATE_SHIM_H

#include <stdint.h>

#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_eth_ring.h>

/* errno / lcore / time */
int dg_errno(void);
unsigned dg_lcore_id(void);
uint64_t dg_rdtsc(void);
uint64_t dg_get_tsc_hz(void);

/* ethdev: the RSS hash types we ask for (IP + UDP + TCP); a macro expression bindgen cannot see */
uint64_t dg_rss_hf_default(void);

/* ethdev fast path */
uint16_t dg_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t dg_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);

/* mbuf */
struct rte_mbuf *dg_pktmbuf_alloc(struct rte_mempool *mp);
int dg_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n);
void dg_pktmbuf_free(struct rte_mbuf *m);
void *dg_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t dg_pktmbuf_data_len(const struct rte_mbuf *m);
uint32_t dg_pktmbuf_pkt_len(const struct rte_mbuf *m);
uint16_t dg_pktmbuf_nb_segs(const struct rte_mbuf *m);
uint16_t dg_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t dg_pktmbuf_tailroom(const struct rte_mbuf *m);
char *dg_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *dg_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *dg_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int dg_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
void dg_pktmbuf_reset(struct rte_mbuf *m);

/* ring */
unsigned dg_ring_mp_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned dg_ring_sp_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned dg_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned dg_ring_mc_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
unsigned dg_ring_sc_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
unsigned dg_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
unsigned dg_ring_count(const struct rte_ring *r);
unsigned dg_ring_free_count(const struct rte_ring *r);

#endif
