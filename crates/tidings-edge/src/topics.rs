//! Per-topic settings by name pattern: delivery modes (`TIDINGS_TOPIC_MODES`) and the
//! topics anyone may join without a token (`TIDINGS_PUBLIC_TOPICS`).

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
    rules: Vec<(Pattern, TopicMode)>,
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
            rules.push((Pattern::parse(pattern, "TIDINGS_TOPIC_MODES")?, mode));
        }
        Ok(Self { rules })
    }

    pub fn mode(&self, topic: &Topic) -> TopicMode {
        self.rules
            .iter()
            .find(|(pattern, _)| pattern.matches(topic))
            .map_or(TopicMode::All, |(_, mode)| *mode)
    }
}

/// Topics any client may join without a token, by name or `prefix*`: an anonymous
/// stream of them carries no inbox. Empty (the default) means none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicTopics {
    patterns: Vec<Pattern>,
}

impl PublicTopics {
    /// Parses `ranking,scores-*`.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let patterns = spec
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| Pattern::parse(p, "TIDINGS_PUBLIC_TOPICS"))
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    pub fn contains(&self, topic: &Topic) -> bool {
        self.patterns.iter().any(|p| p.matches(topic))
    }
}

/// A topic name, or a prefix ending in `*` (`*` alone matches every topic).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    stem: String,
    prefix: bool,
}

impl Pattern {
    fn parse(pattern: &str, variable: &'static str) -> Result<Self, ConfigError> {
        let pattern = pattern.trim();
        let (stem, prefix) = match pattern.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (pattern, false),
        };
        if stem.contains('*') || !((prefix && stem.is_empty()) || Topic::parse(stem).is_ok()) {
            return Err(ConfigError::new(
                variable,
                format!("pattern {pattern:?} must be a topic name, optionally ending in *"),
            ));
        }
        Ok(Self {
            stem: stem.to_owned(),
            prefix,
        })
    }

    fn matches(&self, topic: &Topic) -> bool {
        if self.prefix {
            topic.as_str().starts_with(&self.stem)
        } else {
            topic.as_str() == self.stem
        }
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
        for bad in ["x", "a=sometimes", "a.b=all", "*a=all", "=all"] {
            assert_eq!(
                TopicModes::parse(bad).unwrap_err().variable,
                "TIDINGS_TOPIC_MODES",
                "{bad}"
            );
        }
    }

    #[test]
    fn public_topics_by_name_or_prefix() {
        let public = PublicTopics::parse("ranking, scores-*").unwrap();
        let t = |s| Topic::parse(s).unwrap();
        assert!(public.contains(&t("ranking")));
        assert!(!public.contains(&t("ranking2")), "a name is exact");
        assert!(public.contains(&t("scores-today")));
        assert!(!public.contains(&t("news")));
        assert!(
            !PublicTopics::parse("").unwrap().contains(&t("ranking")),
            "none by default"
        );
        assert!(PublicTopics::parse("*").unwrap().contains(&t("anything")));
        for bad in ["a.b", "*x", "ra*nk*", "a b"] {
            assert_eq!(
                PublicTopics::parse(bad).unwrap_err().variable,
                "TIDINGS_PUBLIC_TOPICS",
                "{bad}"
            );
        }
    }
}
