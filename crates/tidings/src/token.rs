//! `tidings token`: a subscriber token for development and tests, signed with the
//! configured HS256 secret (or the public development secret of `tidings dev`).

use tidings_edge::{Claims, DEV_JWT_SECRET, Verifier, expiry_in};

use crate::cli::TokenArgs;

pub(crate) fn run(args: &TokenArgs) -> anyhow::Result<()> {
    let secret = match &args.jwt_secret {
        Some(secret) => secret.expose().clone(),
        None => {
            eprintln!(
                "tidings: TIDINGS_JWT_SECRET is not set; signing with the public development secret of `tidings dev`"
            );
            DEV_JWT_SECRET.to_owned()
        }
    };
    tidings_domain::MemberId::parse(&args.member).map_err(|e| anyhow::anyhow!("--member: {e}"))?;
    for topic in &args.topics {
        tidings_domain::Topic::parse(topic).map_err(|e| anyhow::anyhow!("--topics: {e}"))?;
    }
    let claims = Claims {
        sub: args.member.clone(),
        exp: expiry_in(args.ttl),
        topics: (!args.topics.is_empty()).then(|| args.topics.clone()),
    };
    let token = Verifier::hs256(secret.as_bytes())
        .sign(&claims)
        .ok_or_else(|| anyhow::anyhow!("signing failed"))?;
    println!("{token}");
    Ok(())
}
