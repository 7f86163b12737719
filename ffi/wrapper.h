/* Headers bindgen reads; the shim header comes last so its prototypes see
 * the DPDK types. */
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_eth_ring.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_ether.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_malloc.h>

#include "shim/shim.h"
