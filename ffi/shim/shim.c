/* Exported wrappers over DPDK's static-inline API; see shim.h. */
#include "shim.h"

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_pause.h>

const uint64_t PYLON_ETH_RSS_IP = RTE_ETH_RSS_IP;
const uint64_t PYLON_ETH_RSS_TCP = RTE_ETH_RSS_TCP;
const uint64_t PYLON_ETH_RSS_UDP = RTE_ETH_RSS_UDP;

uint16_t pylon_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                            struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t pylon_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                            struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *pylon_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

void pylon_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

char *pylon_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *pylon_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}

char *pylon_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

int pylon_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_trim(m, len);
}

unsigned int pylon_ring_dequeue_burst(struct rte_ring *r, void **objs,
                                      unsigned int n)
{
	return rte_ring_dequeue_burst(r, objs, n, NULL);
}

unsigned int pylon_lcore_id(void)
{
	return rte_lcore_id();
}

int pylon_errno(void)
{
	return rte_errno;
}

uint64_t pylon_get_tsc_cycles(void)
{
	return rte_get_tsc_cycles();
}

void pylon_pause(void)
{
	rte_pause();
}
