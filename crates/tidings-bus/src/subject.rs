use tidings_domain::{MemberId, SubjectToken, Topic};

/// The subject grammar, from one prefix and the stream's partition count:
///
/// | subject                                   | holds                                    |
/// |-------------------------------------------|------------------------------------------|
/// | `<prefix>.member.<partition>.<token>`     | a member's notifications (stored)        |
/// | `<prefix>.topic.<topic>`                  | a broadcast topic's messages (stored)    |
/// | `<prefix>.live.member.<partition>.<token>`| the stream's live re-publish of the above |
/// | `<prefix>.live.topic.<topic>`             | the same for topics                      |
///
/// Stored and live subjects never overlap (JetStream refuses a RePublish destination
/// that feeds back into the stream). The member token is [`MemberId::subject_token`],
/// so no member id can widen a subscription or reach another member's subject; the
/// partition is [`MemberId::partition`], so an edge can subscribe to
/// `<prefix>.live.member.<partition>.*` for the partitions its connections live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    partitions: u16,
}

/// What a stored or live subject names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectTarget {
    Member(MemberId),
    Topic(Topic),
}

impl Subjects {
    /// `prefix` must already be validated ([`crate::StreamSettings::validate`]).
    pub fn new(prefix: impl Into<String>, partitions: u16) -> Self {
        Self {
            prefix: prefix.into(),
            partitions: partitions.max(1),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    pub fn partition_of(&self, member: &MemberId) -> u16 {
        member.partition(self.partitions)
    }

    pub fn member(&self, member: &MemberId) -> String {
        format!(
            "{}.member.{}.{}",
            self.prefix,
            self.partition_of(member),
            member.subject_token()
        )
    }

    pub fn topic(&self, topic: &Topic) -> String {
        format!("{}.topic.{}", self.prefix, topic.subject_token())
    }

    /// The subjects the stream stores.
    pub fn stored(&self) -> Vec<String> {
        vec![
            format!("{}.member.*.*", self.prefix),
            format!("{}.topic.*", self.prefix),
        ]
    }

    /// RePublish source and destination: every stored message, under `live`.
    pub fn republish(&self) -> (String, String) {
        (format!("{}.>", self.prefix), format!("{}.live.>", self.prefix))
    }

    /// Every member of one partition, live: what an edge subscribes to.
    pub fn live_partition(&self, partition: u16) -> String {
        format!("{}.live.member.{partition}.*", self.prefix)
    }

    /// Every member of every partition, live: what an edge takes instead of the
    /// partitions one by one once its connections live in most of them.
    pub fn live_members(&self) -> String {
        format!("{}.live.member.*.*", self.prefix)
    }

    pub fn live_member(&self, member: &MemberId) -> String {
        format!(
            "{}.live.member.{}.{}",
            self.prefix,
            self.partition_of(member),
            member.subject_token()
        )
    }

    pub fn live_topic(&self, topic: &Topic) -> String {
        format!("{}.live.topic.{}", self.prefix, topic.subject_token())
    }

    /// The stored subject a live one re-publishes (`<prefix>.live.x` → `<prefix>.x`).
    pub fn stored_of_live(&self, live: &str) -> Option<String> {
        let rest = live.strip_prefix(&self.prefix)?.strip_prefix(".live.")?;
        Some(format!("{}.{rest}", self.prefix))
    }

    /// What a stored subject (e.g. a RePublish `Nats-Subject` header) names, if it is
    /// one of ours.
    pub fn parse_stored(&self, subject: &str) -> Option<SubjectTarget> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        let (kind, rest) = rest.split_once('.')?;
        match kind {
            "member" => {
                let (partition, token) = rest.split_once('.')?;
                let member = SubjectToken::decode(token).ok()?;
                // A partition that does not match the member is not a subject we made.
                (partition == self.partition_of(&member).to_string()).then_some(SubjectTarget::Member(member))
            }
            "topic" => Topic::parse(rest).ok().map(SubjectTarget::Topic),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_subjects_are_partition_and_one_safe_token() {
        let s = Subjects::new("tidings", 1024);
        let m = MemberId::parse("a.b *>").unwrap();
        let subject = s.member(&m);
        let p = m.partition(1024);
        assert_eq!(subject, format!("tidings.member.{p}.{}", m.subject_token()));
        assert_eq!(s.parse_stored(&subject), Some(SubjectTarget::Member(m.clone())));
        assert_eq!(
            s.live_member(&m),
            format!("tidings.live.member.{p}.{}", m.subject_token())
        );
        assert_eq!(s.live_partition(p), format!("tidings.live.member.{p}.*"));
        assert_eq!(s.stored_of_live(&s.live_member(&m)), Some(subject));
        assert_eq!(s.stored_of_live(&s.member(&m)), None, "a stored subject is not live");
        assert_eq!(s.stored_of_live("other.live.member.1.YQ"), None);
    }

    #[test]
    fn parse_stored_refuses_foreign_subjects() {
        let s = Subjects::new("tidings", 1024);
        let p = MemberId::parse("a").unwrap().partition(1024);
        let wrong = format!("tidings.member.{}.YQ", (p + 1) % 1024);
        let padded = format!("tidings.member.0{p}.YQ");
        for subject in [
            "other.member.0.YQ",
            "tidings.member",
            "tidings.member.YQ",
            "tidings.x.YQ",
            "tidingsx.member.0.YQ",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([wrong, padded])
        {
            assert_eq!(s.parse_stored(&subject), None, "{subject}");
        }
        assert!(s.parse_stored(&format!("tidings.member.{p}.YQ")).is_some());
        let t = Topic::parse("ranking").unwrap();
        assert_eq!(s.parse_stored(&s.topic(&t)), Some(SubjectTarget::Topic(t)));
    }
}
