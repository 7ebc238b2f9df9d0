//! `tidings token`: a subscriber token for development and tests, signed with the
//! configured HS256 secret (or the public development secret of `tidings dev`).

use tidings_edge::{Claims, DEV_JWT_SECRET, Verifier, expiry_in};

#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The HS256 secret to sign with (the edge's TIDINGS_JWT_SECRET). Unset: the
    /// public development secret `tidings dev` uses.
    #[arg(long = "jwt-secret", env = "TIDINGS_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<tidings_domain::Secret<String>>,
    /// The member the token is for (its `sub`).
    #[arg(long)]
    pub(crate) member: String,
    /// Topics the token may join, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) topics: Vec<String>,
    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub(crate) ttl: std::time::Duration,
}

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
