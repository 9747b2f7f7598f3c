#!/usr/bin/env bash
# Install a site profile where Snakemake looks up profile names, so that
#   snakemake --profile slurm ...
# works as typed from the repository root. Then edit the copy (account, partitions).
#
#   bash scripts/install-profile.sh [--force] [SOURCE [NAME]]
#
# SOURCE: a folder under profiles/ (default: slurm); NAME: the profile's name (default:
# SOURCE). Destination: ${XDG_CONFIG_HOME:-~/.config}/snakemake/NAME, the first place
# Snakemake searches after the working directory. An existing profile there is kept
# unless --force is given. The workflow profile (profiles/default) is not copied: Snakemake
# reads it from the repository by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
force=0
if [[ ${1:-} == --force ]]; then force=1; shift; fi
src=${1:-slurm}
name=${2:-$src}
if [[ ! -f profiles/$src/config.yaml || $src == default ]]; then
    echo "install-profile: no site profile profiles/$src (have: $(cd profiles && ls -d */ | tr -d / | grep -vx default | tr '\n' ' '))" >&2
    exit 2
fi
dest=${XDG_CONFIG_HOME:-$HOME/.config}/snakemake/$name
if [[ -e $dest && $force -eq 0 ]]; then
    echo "install-profile: $dest exists; kept (--force replaces it)"
    exit 0
fi
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
cp -r "profiles/$src" "$dest"
echo "installed profiles/$src as Snakemake profile '$name': $dest"
if grep -q CHANGE_ME "$dest"/*.yaml; then
    echo "now edit it: ACCOUNT in $dest/config.yaml, partitions in $dest/partitions.yaml"
fi
