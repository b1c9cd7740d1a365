"""testhosts: throwaway Debian hosts as systemd-nspawn containers.

Each host boots real systemd as PID 1 on a private bridge (static addresses, no route
out), is reached over real SSH, and installs packages through a shared apt-cacher-ng
proxy.  One environment (``local``, a Molecule scenario, ...) owns one bridge, one
subnet and one name prefix; cleaning one up never touches another.
"""

__version__ = "1.0.0"
