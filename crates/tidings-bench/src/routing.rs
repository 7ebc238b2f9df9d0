//! Which edge a member's stream goes to: round robin (what a load balancer without
//! affinity does, every edge seeing members of nearly every partition) or by the
//! member's partition (what the shipped nginx and ingress-nginx configs do with the
//! routing key: each partition on one edge). The bench picks the edge itself, as a
//! load balancer would, without one in the way. Its hash is not nginx's; what matters
//! is that it is a consistent function of the partition.

use tidings_domain::MemberId;

/// How the bench spreads members over the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Routing {
    /// Member `i` to edge `i mod E`.
    RoundRobin,
    /// Each member to the edge a consistent hash of its partition picks.
    Affinity,
}

impl Routing {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "round-robin",
            Self::Affinity => "affinity",
        }
    }

    /// The edge (of `edges`) for member number `i`, `member`, in a stream of
    /// `partitions` partitions.
    pub(crate) fn edge_of(self, i: usize, member: &MemberId, partitions: u16, edges: usize) -> usize {
        match self {
            Self::RoundRobin => i % edges.max(1),
            Self::Affinity => by_partition(member.partition(partitions), edges),
        }
    }
}

/// Rendezvous (highest random weight) hashing: the edge whose mix with the partition
/// scores highest. Consistent: an edge that goes away gives up only its own
/// partitions, each to the edge that scored second for it.
pub(crate) fn by_partition(partition: u16, edges: usize) -> usize {
    (0..edges.max(1))
        .max_by_key(|&edge| mix((u64::from(partition) << 32) | edge as u64))
        .expect("invariant: at least one edge")
}

/// SplitMix64's finalizer: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_evenly_and_an_edge_leaving_moves_only_its_own() {
        let of = |edges| (0..1024u16).map(|p| by_partition(p, edges)).collect::<Vec<_>>();
        let three = of(3);
        for edge in 0..3 {
            let n = three.iter().filter(|e| **e == edge).count();
            assert!((290..=390).contains(&n), "edge {edge} holds {n} of 1,024");
        }
        // Edge 2 gone: what edges 0 and 1 held stays where it was.
        let two = of(2);
        for (p, (before, after)) in three.iter().zip(&two).enumerate() {
            if *before != 2 {
                assert_eq!(before, after, "partition {p} moved");
            }
        }
    }

    #[test]
    fn members_of_a_partition_share_an_edge_under_affinity_only() {
        let members: Vec<MemberId> = (0..200).map(|i| MemberId::parse(&format!("m-{i}")).unwrap()).collect();
        let mut edge_of_partition = std::collections::HashMap::new();
        for (i, m) in members.iter().enumerate() {
            let edge = Routing::Affinity.edge_of(i, m, 16, 3);
            assert_eq!(*edge_of_partition.entry(m.partition(16)).or_insert(edge), edge);
            assert_eq!(Routing::RoundRobin.edge_of(i, m, 16, 3), i % 3);
        }
    }
}
