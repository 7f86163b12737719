/*
 * Pylon's C shim over DPDK.
 *
 * DPDK puts its fast path (rx/tx burst, mbuf alloc/free, lcore id, errno,
 * TSC reads) in static-inline functions and macros, which have no symbol in
 * the shared libraries and so cannot be called from Rust directly. Each
 * function here is a real, exported wrapper with a `pylon_` prefix, compiled
 * with DPDK's own cflags so it inlines exactly what a C program would.
 */
#ifndef PYLON_DPDK_SHIM_H
#define PYLON_DPDK_SHIM_H

#include <stdint.h>

#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

/* rte_eth_rx_burst: receive up to nb_pkts mbufs from a queue. */
uint16_t pylon_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                            struct rte_mbuf **rx_pkts, uint16_t nb_pkts);

/* rte_eth_tx_burst: hand up to nb_pkts mbufs to a queue; returns how many the
 * driver took (it owns those from then on). */
uint16_t pylon_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                            struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

/* rte_pktmbuf_alloc: one reset mbuf from the pool, or NULL. */
struct rte_mbuf *pylon_pktmbuf_alloc(struct rte_mempool *mp);

/* rte_pktmbuf_free: free an mbuf and all its segments. */
void pylon_pktmbuf_free(struct rte_mbuf *m);

/* rte_pktmbuf_prepend: grow the first segment into its headroom. */
char *pylon_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);

/* rte_pktmbuf_adj: drop bytes from the front of the first segment. */
char *pylon_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);

/* rte_pktmbuf_append: grow the last segment into its tailroom. */
char *pylon_pktmbuf_append(struct rte_mbuf *m, uint16_t len);

/* rte_pktmbuf_trim: drop bytes from the end of the last segment. */
int pylon_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);

/* rte_ring_dequeue_burst: take up to n objects off a ring (with the
 * consumer mode the ring was created with); returns how many. */
unsigned int pylon_ring_dequeue_burst(struct rte_ring *r, void **objs,
                                      unsigned int n);

/* rte_lcore_id: this thread's lcore id, or LCORE_ID_ANY (UINT32_MAX) for a
 * thread that is not an EAL lcore. */
unsigned int pylon_lcore_id(void);

/* rte_errno: the calling thread's DPDK error number. */
int pylon_errno(void);

/* rte_get_tsc_cycles: the TSC counter. */
uint64_t pylon_get_tsc_cycles(void);

/* rte_pause: the CPU's spin-wait hint. */
void pylon_pause(void);

/* RSS hash-function sets, which DPDK defines as function-like macros
 * (RTE_BIT64) that bindgen cannot evaluate. */
extern const uint64_t PYLON_ETH_RSS_IP;
extern const uint64_t PYLON_ETH_RSS_TCP;
extern const uint64_t PYLON_ETH_RSS_UDP;

#endif /* PYLON_DPDK_SHIM_H */
