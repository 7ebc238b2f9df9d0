#!/usr/bin/env bash
# Mint a subscriber token: the JWT a browser opens its Tidings stream with, an HS256 JWT
# whose `sub` is the member, `exp` its expiry and `topics` the broadcast topics it may
# join, signed with the edge's secret (TIDINGS_JWT_SECRET). Needs openssl and jq.
#
#   bash token.sh alice news
#
# The secret is on openssl's command line while it runs (visible in `ps`): fine for
# development; in production, mint tokens in your backend (see ../python, ../node).
set -euo pipefail
member=${1:?usage: token.sh MEMBER [TOPIC ...]}
shift
# `tidings dev`'s public development secret; never use it in production.
secret=${TIDINGS_JWT_SECRET:-tidings-dev-secret-not-for-production-use}

base64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

claims=$(jq -cn --arg sub "$member" --argjson exp "$(($(date +%s) + 3600))" \
  '{sub: $sub, exp: $exp} + if $ARGS.positional == [] then {} else {topics: $ARGS.positional} end' \
  --args "$@")
header=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | base64url)
payload=$(printf '%s' "$claims" | base64url)
signature=$(printf '%s' "$header.$payload" | openssl dgst -sha256 -hmac "$secret" -binary | base64url)
echo "$header.$payload.$signature"
