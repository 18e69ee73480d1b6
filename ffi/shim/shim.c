/* dialgate C shim: see shim.h. One DPDK inline per function, nothing else. */
#include "shim.h"

int dg_errno(void) { return rte_errno; }
unsigned dg_lcore_id(void) { return rte_lcore_id(); }
uint64_t dg_rdtsc(void) { return rte_rdtsc(); }
uint64_t dg_get_tsc_hz(void) { return rte_get_tsc_hz(); }

uint64_t dg_rss_hf_default(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP; }

uint16_t dg_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t dg_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *dg_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
int dg_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, n);
}
void dg_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void *dg_pktmbuf_mtod(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }
uint16_t dg_pktmbuf_data_len(const struct rte_mbuf *m) { return rte_pktmbuf_data_len(m); }
uint32_t dg_pktmbuf_pkt_len(const struct rte_mbuf *m) { return rte_pktmbuf_pkt_len(m); }
uint16_t dg_pktmbuf_nb_segs(const struct rte_mbuf *m) { return m->nb_segs; }
uint16_t dg_pktmbuf_headroom(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint16_t dg_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
char *dg_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_append(m, len); }
char *dg_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_prepend(m, len); }
char *dg_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_adj(m, len); }
int dg_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
void dg_pktmbuf_reset(struct rte_mbuf *m) { rte_pktmbuf_reset(m); }

unsigned dg_ring_mp_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n)
{
	return rte_ring_mp_enqueue_burst(r, objs, n, NULL);
}
unsigned dg_ring_sp_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n)
{
	return rte_ring_sp_enqueue_burst(r, objs, n, NULL);
}
unsigned dg_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n)
{
	return rte_ring_enqueue_burst(r, objs, n, NULL);
}
unsigned dg_ring_mc_dequeue_burst(struct rte_ring *r, void **objs, unsigned n)
{
	return rte_ring_mc_dequeue_burst(r, objs, n, NULL);
}
unsigned dg_ring_sc_dequeue_burst(struct rte_ring *r, void **objs, unsigned n)
{
	return rte_ring_sc_dequeue_burst(r, objs, n, NULL);
}
unsigned dg_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n)
{
	return rte_ring_dequeue_burst(r, objs, n, NULL);
}
unsigned dg_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }
unsigned dg_ring_free_count(const struct rte_ring *r) { return rte_ring_free_count(r); }
