#!/usr/bin/env bash
# What the browser, SSH, Slurm and terminal tests need beyond Python (Debian/Ubuntu packages):
# chromium and its driver for the report's browser tests, openssh-server and rsync for the remote
# runner against a real sshd on loopback, slurmctld, slurmd, slurm-client and munge for the Slurm
# runner against a real local Slurm, tmux for the live panel in a real terminal. Without them
# `make test` still passes, skipping those tests and saying which and why at the end.
set -euo pipefail
need_apt=()
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
[ -x /usr/sbin/slurmctld ] || need_apt+=(slurmctld)
[ -x /usr/sbin/slurmd ] || need_apt+=(slurmd)
command -v sbatch >/dev/null 2>&1 || need_apt+=(slurm-client)
[ -x /usr/sbin/munged ] || need_apt+=(munge)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
if [ ${#need_apt[@]} -eq 0 ]; then
    echo "system-deps: everything is installed"
    exit 0
fi
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "system-deps: installing ${need_apt[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${need_apt[@]}"
