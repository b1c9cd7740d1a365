#!/bin/sh
# mmdebstrap --customize-hook for test-host base images; $1 = the new root.
# Part of the image recipe: any change here changes the image hash and rebuilds the image.
set -eu
R="$1"
# networkd brings up host0 with the per-host static .network file from the overlay
chroot "$R" systemctl enable systemd-networkd.service
# every host makes its own SSH host keys at first boot instead of sharing the image's
rm -f "$R"/etc/ssh/ssh_host_*
mkdir -p "$R/etc/systemd/system/ssh.service.d"
cat > "$R/etc/systemd/system/ssh.service.d/10-testhosts-hostkeys.conf" <<'EOT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
EOT
# OpenSSH 9.8+ (Debian 13) shuts out an address for a while after failed logins; a test
# host has one client, the control node, and one bad probe must not fail the tests after it
if grep -qa PerSourcePenalties "$R/usr/sbin/sshd"; then
  printf 'PerSourcePenalties no\n' > "$R/etc/ssh/sshd_config.d/10-testhosts.conf"
fi
# mmdebstrap copies the build machine's hostname and resolv.conf; each host gets its own
# /etc/hostname and /etc/hosts from the overlay, and there is no DNS behind the proxy.
rm -f "$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"
printf '# test hosts have no DNS; apt goes through the proxy on the bridge\n' > "$R/etc/resolv.conf"
# a fresh machine-id at every first boot
: > "$R/etc/machine-id"
# the build-time proxy option must not shadow each host's own proxy file
rm -f "$R/etc/apt/apt.conf.d/99mmdebstrap"
