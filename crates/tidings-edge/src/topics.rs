//! Per-topic delivery modes from `TIDINGS_TOPIC_MODES`.

use tidings_domain::{ConfigError, Topic};

/// How a topic is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicMode {
    /// On connect or resume only the newest message; a slow reader's queued older value
    /// is replaced by the newer one. For state snapshots such as a ranking board.
    Latest,
    /// Every message, replayed on resume like notifications.
    All,
}

/// Ordered `pattern=mode` rules; the first match wins, no match means `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicModes {
    rules: Vec<(String, TopicMode)>,
}

impl TopicModes {
    /// Parses `ranking*=latest,*=all`.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let err = |why: String| ConfigError::new("TIDINGS_TOPIC_MODES", why);
        let mut rules = Vec::new();
        for rule in spec.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (pattern, mode) = rule
                .split_once('=')
                .ok_or_else(|| err(format!("{rule:?} is not pattern=mode")))?;
            let mode = match mode.trim() {
                "latest" => TopicMode::Latest,
                "all" => TopicMode::All,
                other => return Err(err(format!("mode {other:?} is neither latest nor all"))),
            };
            let pattern = pattern.trim();
            let stem = pattern.strip_suffix('*').unwrap_or(pattern);
            if stem.contains('*') || !(stem.is_empty() || Topic::parse(stem).is_ok()) {
                return Err(err(format!(
                    "pattern {pattern:?} must be a topic name, optionally ending in *"
                )));
            }
            rules.push((pattern.to_owned(), mode));
        }
        Ok(Self { rules })
    }

    pub fn mode(&self, topic: &Topic) -> TopicMode {
        self.rules
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(stem) => topic.as_str().starts_with(stem),
                None => pattern == topic.as_str(),
            })
            .map_or(TopicMode::All, |(_, mode)| *mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_match_wins() {
        let modes = TopicModes::parse("ranking*=latest, ranking-archive=all, *=all").unwrap();
        let t = |s| Topic::parse(s).unwrap();
        assert_eq!(modes.mode(&t("ranking")), TopicMode::Latest);
        assert_eq!(
            modes.mode(&t("ranking-archive")),
            TopicMode::Latest,
            "the earlier rule matched first"
        );
        assert_eq!(modes.mode(&t("news")), TopicMode::All);
        assert_eq!(TopicModes::parse("").unwrap().mode(&t("x")), TopicMode::All);
        for bad in ["x", "a=sometimes", "a.b=all", "*a=all"] {
            assert_eq!(
                TopicModes::parse(bad).unwrap_err().variable,
                "TIDINGS_TOPIC_MODES",
                "{bad}"
            );
        }
    }
}
