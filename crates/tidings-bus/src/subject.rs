use tidings_domain::{MemberId, SubjectToken, Topic};

/// The subject grammar, from one prefix:
///
/// | subject                            | holds                                   |
/// |------------------------------------|-----------------------------------------|
/// | `<prefix>.member.<member-token>`   | a member's notifications (stored)       |
/// | `<prefix>.topic.<topic>`           | a broadcast topic's messages (stored)   |
/// | `<prefix>.live.member.<token>`     | the stream's live re-publish of the above |
/// | `<prefix>.live.topic.<topic>`      | the same for topics                     |
///
/// Stored and live subjects never overlap (JetStream refuses a RePublish destination
/// that feeds back into the stream). The member token is [`MemberId::subject_token`],
/// so no member id can widen a subscription or reach another member's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

/// What a stored or live subject names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectTarget {
    Member(MemberId),
    Topic(Topic),
}

impl Subjects {
    /// `prefix` must already be validated ([`crate::StreamSettings::validate`]).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn member(&self, member: &MemberId) -> String {
        format!("{}.member.{}", self.prefix, member.subject_token())
    }

    pub fn topic(&self, topic: &Topic) -> String {
        format!("{}.topic.{}", self.prefix, topic.subject_token())
    }

    /// The subjects the stream stores.
    pub fn stored(&self) -> Vec<String> {
        vec![format!("{}.member.*", self.prefix), format!("{}.topic.*", self.prefix)]
    }

    /// RePublish source and destination: every stored message, under `live`.
    pub fn republish(&self) -> (String, String) {
        (format!("{}.>", self.prefix), format!("{}.live.>", self.prefix))
    }

    pub fn live_member(&self, member: &MemberId) -> String {
        format!("{}.live.member.{}", self.prefix, member.subject_token())
    }

    pub fn live_topic(&self, topic: &Topic) -> String {
        format!("{}.live.topic.{}", self.prefix, topic.subject_token())
    }

    /// What a stored subject (e.g. a RePublish `Nats-Subject` header) names, if it is
    /// one of ours.
    pub fn parse_stored(&self, subject: &str) -> Option<SubjectTarget> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        let (kind, token) = rest.split_once('.')?;
        match kind {
            "member" => SubjectToken::decode(token).ok().map(SubjectTarget::Member),
            "topic" => Topic::parse(token).ok().map(SubjectTarget::Topic),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_subjects_are_one_safe_token() {
        let s = Subjects::new("tidings");
        let m = MemberId::parse("a.b *>").unwrap();
        let subject = s.member(&m);
        assert_eq!(subject.split('.').count(), 3, "{subject}");
        assert_eq!(s.parse_stored(&subject), Some(SubjectTarget::Member(m.clone())));
        assert_eq!(s.live_member(&m), format!("tidings.live.member.{}", m.subject_token()));
    }

    #[test]
    fn parse_stored_refuses_foreign_subjects() {
        let s = Subjects::new("tidings");
        for subject in [
            "other.member.YQ",
            "tidings.member",
            "tidings.member.a.b",
            "tidings.x.YQ",
            "tidingsx.member.YQ",
        ] {
            assert_eq!(s.parse_stored(subject), None, "{subject}");
        }
        let t = Topic::parse("ranking").unwrap();
        assert_eq!(s.parse_stored(&s.topic(&t)), Some(SubjectTarget::Topic(t)));
    }
}
