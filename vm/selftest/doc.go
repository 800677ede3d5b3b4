// Package selftest proves that a VM started by scripts/vm/run can do what the
// gateway needs from the kernel: 802.1Q links (vishvananda/netlink), a bridge
// with VLAN filtering, and nftables tables, chains and rules including a NAT
// chain (google/nftables). The host kernel of the development machines lacks
// 802.1Q and bridge VLAN filtering, which is why this runs in the QEMU VMs.
//
// It is its own module (vm/selftest/go.mod) so that it can depend on
// google/nftables without touching the main module's go.mod.
package selftest
