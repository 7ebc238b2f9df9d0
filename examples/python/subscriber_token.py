"""Mint a subscriber token: the JWT a browser opens its Tidings stream with.

Your backend does this when a signed-in user loads a page: the token names the member
(`sub`), when it expires (`exp`) and which broadcast topics it may join (`topics`),
signed with the edge's HS256 secret (TIDINGS_JWT_SECRET).

    python subscriber_token.py alice news
"""

import os
import sys
import time

import jwt  # PyJWT

# `tidings dev`'s public development secret; never use it in production.
DEV_SECRET = "tidings-dev-secret-not-for-production-use"


def subscriber_token(member_id, topics=(), ttl_seconds=3600):
    secret = os.environ.get("TIDINGS_JWT_SECRET", DEV_SECRET)
    claims = {"sub": member_id, "exp": int(time.time()) + ttl_seconds}
    if topics:
        claims["topics"] = list(topics)
    return jwt.encode(claims, secret, algorithm="HS256")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python subscriber_token.py MEMBER [TOPIC ...]")
    print(subscriber_token(sys.argv[1], sys.argv[2:]))
