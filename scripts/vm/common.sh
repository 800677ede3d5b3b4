# shellcheck shell=bash disable=SC2034  # the settings are used by the scripts that source this
# Shared by scripts/vm/run and scripts/vm/all (sourced, not executed).
# Architecture table, host tool installation, and the Debian package cache.

vm_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
vm_cache=${VM_CACHE:-$vm_root/vm/cache}
vm_arches=(mipsle armhf arm64 amd64 mips)
# What runs when no package is named: the VM self-test and the packages that
# talk to the kernel's VLAN, bridge and nftables code. VM_PACKAGES overrides it.
# shellcheck disable=SC2206 # a list of words
vm_default_pkgs=(${VM_PACKAGES:-$vm_root/vm/selftest $vm_root/lab $vm_root/vlan $vm_root/firewall})
export DEBIAN_FRONTEND=noninteractive

# vm_cache_init: creates the cache directory. Inside the repository it gets a
# go.mod of its own, so that go's ./... does not walk the downloaded trees.
vm_cache_init() {
	mkdir -p "$vm_cache"
	if [[ $vm_cache == "$vm_root"/* && ! -e $vm_cache/go.mod ]]; then
		printf '// Not Go code: keeps ./... out of the VM cache (scripts/vm).\nmodule voipgw.invalid/vmcache\n' >"$vm_cache/go.mod"
	fi
}

vm_log() { printf '[vm %s] %s\n' "${vm_arch:-*}" "$*" >&2; }
vm_die() { vm_log "ERROR: $*"; exit 2; }

# vm_now: seconds since the epoch with microseconds (bash 5).
vm_now() { echo "${EPOCHREALTIME/,/.}"; }
# vm_secs START [END]: END-START in seconds with one decimal.
vm_secs() { awk -v a="$1" -v b="${2:-$(vm_now)}" 'BEGIN { printf "%.1f", b - a }'; }

# vm_select ARCH: sets the per-architecture settings below, or fails for an unknown ARCH.
#   vm_arch      canonical name (mipsle armhf arm64 amd64)
#   vm_debarch   Debian architecture of the kernel and busybox packages
#   vm_goenv     GOARCH and variant, as VAR=value words (same targets as scripts/build)
#   vm_kernel    Debian kernel package (a meta package; VM_KERNEL_PKG overrides)
#   vm_qemu      QEMU binary and vm_qemu_pkg, the Debian package that ships it
#   vm_machine   machine and CPU arguments for QEMU
#   vm_console   the serial console's device name in the guest
#   vm_userland  busybox (Debian's busybox-static and scripts/vm/init) or goinit
#                (vm/goinit, for big-endian MIPS, where Debian 12 has no packages)
vm_select() {
	vm_userland=busybox
	case $1 in
	mipsle | mipsel)
		vm_arch=mipsle vm_debarch=mipsel vm_goenv="GOARCH=mipsle GOMIPS=softfloat"
		vm_kernel=linux-image-4kc-malta vm_qemu=qemu-system-mipsel vm_qemu_pkg=qemu-system-mips
		vm_machine="-M malta -cpu 24Kc" vm_console=ttyS0 ;;
	armhf | arm)
		# highmem=off keeps every device below 4 GiB, which the non-LPAE armmp flavour needs too.
		vm_arch=armhf vm_debarch=armhf vm_goenv="GOARCH=arm GOARM=7"
		vm_kernel=linux-image-armmp-lpae vm_qemu=qemu-system-arm vm_qemu_pkg=qemu-system-arm
		vm_machine="-M virt,highmem=off -cpu cortex-a15" vm_console=ttyAMA0 ;;
	arm64 | aarch64)
		vm_arch=arm64 vm_debarch=arm64 vm_goenv="GOARCH=arm64"
		vm_kernel=linux-image-cloud-arm64 vm_qemu=qemu-system-aarch64 vm_qemu_pkg=qemu-system-arm
		vm_machine="-M virt -cpu cortex-a57" vm_console=ttyAMA0 ;;
	amd64 | x86_64)
		vm_arch=amd64 vm_debarch=amd64 vm_goenv="GOARCH=amd64"
		vm_kernel=linux-image-cloud-amd64 vm_qemu=qemu-system-x86_64 vm_qemu_pkg=qemu-system-x86
		vm_machine="-M q35" vm_console=ttyS0 ;;
	mips | mipsbe | ath79)
		# Debian 12 has no big-endian MIPS port: the kernel is built from Debian's
		# linux-source-6.1 with Debian's cross compiler (vm_mips_kernel).
		vm_arch=mips vm_debarch="" vm_goenv="GOARCH=mips GOMIPS=softfloat"
		vm_kernel="linux-source-6.1 + scripts/vm/mips-be.config" vm_qemu=qemu-system-mips vm_qemu_pkg=qemu-system-mips
		vm_machine="-M malta -cpu 24Kc" vm_console=ttyS0 vm_userland=goinit ;;
	*) return 1 ;;
	esac
	[[ $vm_arch == mips ]] || vm_kernel=${VM_KERNEL_PKG:-$vm_kernel}
}

# Debian packages whose commands go into the VMs, with the shared libraries they
# need (tests call nft, ip netns exec, bridge, conntrack): VM_TOOLS lists the
# packages (empty: none), VM_TOOL_CMDS the commands. Not for mips (no packages).
# netbase brings /etc/protocols and /etc/services (nft prints "udp", not "17").
vm_tools=${VM_TOOLS-nftables iproute2 conntrack netbase}
vm_tool_cmds=${VM_TOOL_CMDS:-nft ip bridge tc conntrack}
vm_tool_files="etc/protocols etc/services etc/ethertypes"

# vm_host_tools: installs what the host needs (as root, from Debian) if it is missing.
vm_host_tools() {
	local need=() pkg
	command -v "$vm_qemu" >/dev/null || need+=("$vm_qemu_pkg")
	command -v cpio >/dev/null || need+=(cpio)
	command -v depmod >/dev/null || [[ -x /usr/sbin/depmod || -x /sbin/depmod ]] || need+=(kmod)
	command -v flock >/dev/null || need+=(util-linux)
	command -v dpkg-deb >/dev/null || need+=(dpkg)
	command -v apt-get >/dev/null || vm_die "apt-get not found: this needs a Debian host"
	command -v go >/dev/null || vm_die "go not found"
	[[ -z $vm_tools || $vm_arch == mips ]] || command -v readelf >/dev/null || need+=(binutils)
	if [[ $vm_arch == mips ]]; then
		command -v mips-linux-gnu-gcc >/dev/null || need+=(gcc-mips-linux-gnu)
		[[ -f /usr/src/linux-source-6.1.tar.xz ]] || need+=(linux-source-6.1)
		for pkg in make bc flex bison xz; do
			command -v "$pkg" >/dev/null || need+=("${pkg/#xz/xz-utils}")
		done
		[[ -f /usr/include/openssl/ssl.h ]] || need+=(libssl-dev)
	fi
	[[ ${#need[@]} -eq 0 ]] && return 0
	[[ $(id -u) -eq 0 ]] || vm_die "missing host packages (${need[*]}); run as root or: apt-get install ${need[*]}"
	vm_log "installing host packages: ${need[*]}"
	mkdir -p "$vm_cache/logs"
	(
		# Several runs may do this at once: apt waits for its own lock.
		vm_retry 3 apt-get -qq -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 update &&
			vm_retry 3 apt-get install -y -qq -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=300 \
				--no-install-recommends "${need[@]}"
	) >"$vm_cache/logs/host-apt.log" 2>&1 || {
		tail -n 20 "$vm_cache/logs/host-apt.log" >&2
		vm_die "apt-get install ${need[*]} failed (log: $vm_cache/logs/host-apt.log)"
	}
	for pkg in "$vm_qemu" cpio; do command -v "$pkg" >/dev/null || vm_die "$pkg still missing after install"; done
}
PATH=$PATH:/usr/sbin:/sbin

# vm_retry N CMD...: runs CMD up to N times (mirrors can be mid-sync for a moment).
vm_retry() {
	local n=$1 i
	shift
	for ((i = 1; i <= n; i++)); do
		"$@" && return 0
		[[ $i -lt $n ]] && sleep $((i * 5))
	done
	return 1
}

# vm_apt ARGS...: apt-get/apt-cache for the foreign architecture, with its own
# package lists and archive cache under vm/cache/apt/DEBARCH, and the host's
# own list of Debian sources. It never touches the host's package state.
vm_apt() {
	local tool=$1 d=$vm_cache/apt/$vm_debarch
	shift
	mkdir -p "$d/lists/partial" "$d/archives/partial"
	[[ -f $d/status ]] || : >"$d/status"
	"$tool" \
		-o "APT::Architecture=$vm_debarch" -o "APT::Architectures=$vm_debarch" \
		-o "Dir::State::Lists=$d/lists" -o "Dir::State::status=$d/status" \
		-o "Dir::Cache=$d" -o "Dir::Cache::archives=$d/archives" \
		-o APT::Sandbox::User=root -o Acquire::Retries=3 \
		"$@"
}

# vm_fetch: makes sure vm/cache/ARCH holds the kernel and busybox-static packages,
# extracted. Once fetched, runs are offline; VM_REFRESH=1 looks for newer ones.
# Sets vm_kdir (extracted kernel package), vm_kver, vm_vmlinuz, vm_busybox, and
# vm_pkgs (the packages used, "name version" lines).
vm_fetch() {
	local dir=$vm_cache/$vm_arch manifest want wtools kpkg f tmp closure p
	mkdir -p "$dir/debs/tools"
	manifest=$dir/manifest
	want="kernel-meta $vm_kernel"
	wtools="tools $vm_tools"
	exec {lockfd}>"$dir/.lock"
	flock "$lockfd"
	if [[ ${VM_REFRESH:-0} == 1 || ! -s $manifest ]] || ! grep -qxF "$want" "$manifest" ||
		! grep -qxF "$wtools" "$manifest" || ! vm_manifest_ok "$manifest"; then
		vm_log "fetching $vm_kernel and busybox-static for $vm_debarch from Debian"
		vm_retry 3 vm_apt apt-get -qq update >"$dir/apt.log" 2>&1 || {
			# A failed update with lists already there is fine: use what we have.
			compgen -G "$vm_cache/apt/$vm_debarch/lists/*Packages*" >/dev/null ||
				{ cat "$dir/apt.log" >&2; vm_die "apt-get update for $vm_debarch failed"; }
			vm_log "warning: apt-get update for $vm_debarch failed; using the package lists from before"
		}
		kpkg=$vm_kernel
		if [[ ! $kpkg =~ -[0-9]+\.[0-9]+\.[0-9]+-[0-9]+- ]]; then
			# A meta package: follow it to the versioned image package it depends on.
			kpkg=$(vm_apt apt-cache depends --important "$kpkg" 2>>"$dir/apt.log" |
				awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
			[[ -n $kpkg ]] || vm_die "cannot resolve $vm_kernel for $vm_debarch (see $dir/apt.log)"
		fi
		tmp=$(mktemp -d "$dir/debs/.dl.XXXXXX")
		if ! (cd "$tmp" && vm_retry 3 vm_apt apt-get -qq download "$kpkg" busybox-static) >>"$dir/apt.log" 2>&1; then
			rm -rf "$tmp"
			cat "$dir/apt.log" >&2
			vm_die "apt-get download $kpkg busybox-static ($vm_debarch) failed"
		fi
		{
			echo "$want"
			for f in "$tmp"/*.deb; do
				mv -f "$f" "$dir/debs/"
				echo "deb $(basename "$f")"
			done
		} >"$manifest.new"
		echo "$wtools" >>"$manifest.new"
		if [[ -n $vm_tools ]]; then
			# The tools and what they depend on (recursively), less the packaging tools
			# (debconf, dpkg...); run copies only the shared objects the binaries need.
			# shellcheck disable=SC2086 # a list of package names
			closure=$(vm_apt apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
				--no-breaks --no-replaces --no-enhances $vm_tools 2>>"$dir/apt.log" | grep -v '^[ <]' | sort -u |
				while read -r p; do
					case $p in
					debconf | cdebconf | dpkg | tar | install-info | perl-base | init-system-helpers | libdebian-installer* | libnewt* | libslang* | libtextwrap*) ;;
					*) echo "$p" ;;
					esac
				done) || true
			[[ -n $closure ]] || vm_die "cannot resolve the dependencies of $vm_tools for $vm_debarch (see $dir/apt.log)"
			# shellcheck disable=SC2086
			if ! (cd "$tmp" && vm_retry 3 vm_apt apt-get -qq download $closure) >>"$dir/apt.log" 2>&1; then
				rm -rf "$tmp"
				tail -n 20 "$dir/apt.log" >&2
				vm_die "apt-get download of $vm_tools and their libraries ($vm_debarch) failed"
			fi
			for f in "$tmp"/*.deb; do
				mv -f "$f" "$dir/debs/tools/"
				echo "tool $(basename "$f")"
			done >>"$manifest.new"
		fi
		rmdir "$tmp"
		mv -f "$manifest.new" "$manifest"
	fi
	vm_pkgs=""
	vm_kdir="" vm_busybox=""
	while read -r kind f; do
		[[ $kind == deb ]] || continue
		local name ver x=$dir/root/${f%.deb}
		name=$(dpkg-deb -f "$dir/debs/$f" Package)
		ver=$(dpkg-deb -f "$dir/debs/$f" Version)
		vm_pkgs+="$name $ver ($vm_debarch)"$'\n'
		if [[ ! -e $x/.extracted ]]; then
			rm -rf "$x"
			mkdir -p "$x"
			dpkg-deb -x "$dir/debs/$f" "$x"
			if [[ $name == linux-image-* ]]; then
				# The package's postinst would run depmod; do it on the extracted tree.
				depmod -b "$x" "$(basename "$x"/lib/modules/*)"
			fi
			touch "$x/.extracted"
		fi
		case $name in
		linux-image-*) vm_kdir=$x ;;
		busybox-static) vm_busybox=$x/bin/busybox ;;
		esac
	done <"$manifest"
	[[ -n $vm_kdir && -x $vm_busybox ]] || vm_die "cache $dir is incomplete; rerun with VM_REFRESH=1"
	# All tool packages extracted into one tree (again when the list changes).
	vm_tools_root=""
	if [[ -n $vm_tools ]]; then
		vm_tools_root=$dir/root/tools
		if ! cmp -s <(grep '^tool ' "$manifest") "$vm_tools_root/.extracted" 2>/dev/null; then
			rm -rf "$vm_tools_root"
			mkdir -p "$vm_tools_root"
			while read -r kind f; do
				[[ $kind == tool ]] && dpkg-deb -x "$dir/debs/tools/$f" "$vm_tools_root"
			done <"$manifest"
			grep '^tool ' "$manifest" >"$vm_tools_root/.extracted"
		fi
		for p in $vm_tools; do
			f=$(grep -o "^tool ${p}_[^ ]*" "$manifest" | head -n 1) || true
			[[ -n $f ]] && vm_pkgs+="$p $(dpkg-deb -f "$dir/debs/tools/${f#tool }" Version) ($vm_debarch)"$'\n'
		done
	fi
	vm_kver=$(basename "$vm_kdir"/lib/modules/*)
	vm_vmlinuz=$vm_kdir/boot/vmlinuz-$vm_kver
	[[ -f $vm_vmlinuz ]] || vm_die "no kernel image in $vm_kdir/boot"
	# Keep only the packages the manifest names.
	for f in "$dir"/debs/*.deb; do
		grep -qxF "deb $(basename "$f")" "$manifest" || rm -f "$f"
	done
	for f in "$dir"/debs/tools/*.deb; do
		[[ -e $f ]] || continue
		grep -qxF "tool $(basename "$f")" "$manifest" || rm -f "$f"
	done
	for f in "$dir"/root/*/; do
		[[ -d $f && $(basename "$f") != tools ]] || continue
		grep -qxF "deb $(basename "$f").deb" "$manifest" || rm -rf "$f"
	done
	exec {lockfd}>&-
}

# vm_manifest_ok FILE: every package the manifest names is in the cache.
vm_manifest_ok() {
	local kind f n=0
	while read -r kind f; do
		case $kind in
		deb) [[ -s $vm_cache/$vm_arch/debs/$f ]] || return 1; n=$((n + 1)) ;;
		tool) [[ -s $vm_cache/$vm_arch/debs/tools/$f ]] || return 1 ;;
		esac
	done <"$1"
	[[ $n -ge 2 ]]
}

# vm_mips_kernel: builds (once, cached in vm/cache/mips) a big-endian MIPS malta
# kernel from Debian's linux-source-6.1 with Debian's mips-linux-gnu cross
# compiler: malta_defconfig, every module off, scripts/vm/mips-be.config on top.
# Sets vm_vmlinuz and vm_pkgs. A new linux-source version or a change of the
# fragment (or of this function) builds a new one.
vm_mips_kernel() {
	local dir=$vm_cache/mips src=/usr/src/linux-source-6.1.tar.xz frag=$vm_root/scripts/vm/mips-be.config
	local ver key out b t0 opt missing=()
	ver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
	key=$({ cat "$frag"; declare -f vm_mips_kernel; } | sha256sum | cut -c1-12)
	out=$dir/vmlinux-$ver-$key
	vm_pkgs="linux-source-6.1 $ver, gcc-mips-linux-gnu $(dpkg-query -W -f='${Version}' gcc-mips-linux-gnu)"
	mkdir -p "$dir"
	exec {lockfd}>"$dir/.lock"
	flock "$lockfd"
	if [[ ! -s $out ]]; then
		t0=$(vm_now)
		vm_log "building a big-endian malta kernel from linux-source-6.1 $ver (once; ~10 min on 2 cores; log vm/cache/mips/kernel-build.log)"
		b=$dir/build
		rm -rf "$b"
		mkdir -p "$b"
		if ! (
			set -e
			tar -xJf "$src" -C "$b" --strip-components=1
			cd "$b"
			export ARCH=mips CROSS_COMPILE=mips-linux-gnu-
			make malta_defconfig
			sed -i -E 's/^(CONFIG_[A-Za-z0-9_]+)=m$/# \1 is not set/' .config
			scripts/kconfig/merge_config.sh -m .config "$frag"
			make olddefconfig
			make -j"$(($(nproc) + 1))" vmlinux
		) >"$dir/kernel-build.log" 2>&1; then
			tail -n 30 "$dir/kernel-build.log" >&2
			vm_die "the big-endian kernel did not build (log: $dir/kernel-build.log)"
		fi
		for opt in CPU_BIG_ENDIAN VLAN_8021Q BRIDGE BRIDGE_VLAN_FILTERING VETH NF_TABLES NF_TABLES_INET NFT_NAT NFT_MASQ NF_CONNTRACK NET_NS DEVTMPFS; do
			grep -qx "CONFIG_$opt=y" "$b/.config" || missing+=("$opt")
		done
		[[ ${#missing[@]} -eq 0 ]] || vm_die "the big-endian kernel config lacks: ${missing[*]}"
		cp "$b/.config" "$out.config"
		cp "$b/vmlinux" "$out.tmp"
		mv -f "$out.tmp" "$out"
		rm -rf "$b"
		find "$dir" -maxdepth 1 -name 'vmlinux-*' ! -name "$(basename "$out")*" -delete
		vm_log "kernel built in $(vm_secs "$t0")s"
	fi
	exec {lockfd}>&-
	vm_vmlinuz=$out
	vm_kdir="" vm_kver="" vm_busybox=""
}
