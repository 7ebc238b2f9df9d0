// Mint a subscriber token: the JWT a browser opens its Tidings stream with.
//
// Your backend does this when a signed-in user loads a page: the token names the member
// (`sub`), when it expires (`exp`) and which broadcast topics it may join (`topics`),
// signed with the edge's HS256 secret (TIDINGS_JWT_SECRET).
//
//   node subscriber-token.mjs alice news
import { fileURLToPath } from 'node:url';
import jwt from 'jsonwebtoken';

// `tidings dev`'s public development secret; never use it in production.
const DEV_SECRET = 'tidings-dev-secret-not-for-production-use';

export function subscriberToken(memberId, topics = [], ttlSeconds = 3600) {
  const secret = process.env.TIDINGS_JWT_SECRET ?? DEV_SECRET;
  const claims = { sub: memberId };
  if (topics.length > 0) claims.topics = topics;
  // jsonwebtoken sets `iat` and, from expiresIn, `exp`.
  return jwt.sign(claims, secret, { algorithm: 'HS256', expiresIn: ttlSeconds });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [memberId, ...topics] = process.argv.slice(2);
  if (!memberId) {
    console.error('usage: node subscriber-token.mjs MEMBER [TOPIC ...]');
    process.exit(2);
  }
  console.log(subscriberToken(memberId, topics));
}
