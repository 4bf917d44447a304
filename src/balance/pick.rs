//! Choosing a site's upstream for one request, by its policy, among those whose health lets
//! them take it: weighted round robin in a smooth order (no upstream gets its weight's worth of
//! requests in a row), weighted least connections in that same order among equals, and a
//! weighted rendezvous hash of the client (its address, or a cookie's value) for sticky
//! sessions. A returning upstream's share ramps (see `health`): round robin and least
//! connections pass it over for a part of their turns, and the hash moves to it a part of its
//! clients, the same ones each time.

use crate::runtime::hash::mix;

/// The order weighted round robin visits members in, `weights[i]` times each, spread the way
/// nginx's smooth weighted round robin spreads them (weights 5,1,1: a a b a c a a).
pub(super) fn smooth_order(weights: &[u32]) -> Box<[u8]> {
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            for (c, w) in current.iter_mut().zip(weights) {
                *c += i64::from(*w);
            }
            let best = (0..weights.len())
                .max_by_key(|i| (current[*i], std::cmp::Reverse(*i)))
                .expect("at least one member");
            current[best] -= total;
            u8::try_from(best).expect("at most 32 members")
        })
        .collect()
}

/// One member as a pick sees it.
#[derive(Clone, Copy)]
pub(super) struct Candidate {
    /// Its share now: 0 when it is out, up to 1.
    pub(super) share: f64,
    pub(super) weight: u32,
    pub(super) in_flight: u32,
}

impl Candidate {
    /// A member a pick may not take.
    pub(super) const OUT: Candidate = Candidate {
        share: 0.0,
        weight: 1,
        in_flight: 0,
    };
}

/// Whether a member with `share` takes the turn numbered `turn` (a ramping member is passed
/// over for a part of them, spread over the turns by a hash).
fn takes(share: f64, turn: u64) -> bool {
    share >= 1.0 || unit(mix(turn)) < share
}

/// `x` as a number in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Round robin: the first member from `turn`'s place in `order` that takes the turn.
pub(super) fn round_robin(order: &[u8], turn: u64, members: &[Candidate]) -> Option<usize> {
    let start = usize::try_from(turn % order.len() as u64).unwrap_or(0);
    order[start..]
        .iter()
        .chain(&order[..start])
        .map(|i| usize::from(*i))
        .find(|i| members[*i].share > 0.0 && takes(members[*i].share, turn))
}

/// Least connections: the fewest requests under way for its weight, ties (the idle ones, under
/// light load) to the first in round robin order from `turn`, so that the weights hold there
/// too; a ramping member takes a part of its turns, as in round robin.
pub(super) fn least_conn(order: &[u8], turn: u64, members: &[Candidate]) -> Option<usize> {
    let start = usize::try_from(turn % order.len() as u64).unwrap_or(0);
    let mut best: Option<(usize, f64)> = None;
    for i in order[start..].iter().chain(&order[..start]) {
        let i = usize::from(*i);
        let member = &members[i];
        if member.share <= 0.0 || best.is_some_and(|(b, _)| b == i) || !takes(member.share, turn) {
            continue;
        }
        let load = f64::from(member.in_flight) / f64::from(member.weight);
        if best.is_none_or(|(_, least)| load < least) {
            best = Some((i, load));
        }
    }
    best.map(|(i, _)| i)
}

/// Rendezvous hash of `key`: each member scores `weight / -ln(u)` with `u` a hash of the key
/// and the member's `seeds` entry (its address), the highest wins; a member that is out is
/// skipped, so only its clients move. A ramping member keeps the clients whose hash falls
/// under its share.
pub(super) fn rendezvous(key: u64, seeds: &[u64], members: &[Candidate]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, member) in members.iter().enumerate() {
        let h = mix(key ^ seeds[i]);
        if member.share <= 0.0 || !takes(member.share, h.rotate_left(17)) {
            continue;
        }
        // In (0, 1]: never ln(0).
        let u = 1.0 - unit(h);
        let score = f64::from(member.weight) / -u.ln().min(-f64::MIN_POSITIVE);
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .map(|w| Candidate {
                share: 1.0,
                weight: *w,
                in_flight: 0,
            })
            .collect()
    }

    #[test]
    fn the_smooth_order_spreads_the_weights() {
        assert_eq!(&*smooth_order(&[5, 1, 1]), &[0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(&*smooth_order(&[1, 1]), &[0, 1]);
    }

    #[test]
    fn round_robin_follows_the_weights_and_skips_the_out() {
        let order = smooth_order(&[3, 1]);
        let mut members = up(&[3, 1]);
        let mut counts = [0; 2];
        for turn in 0..400 {
            counts[round_robin(&order, turn, &members).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100]);
        members[0].share = 0.0;
        assert!((0..10).all(|turn| round_robin(&order, turn, &members) == Some(1)));
        members[1].share = 0.0;
        assert_eq!(round_robin(&order, 0, &members), None);
    }

    #[test]
    fn a_ramping_member_gets_its_share() {
        let order = smooth_order(&[1, 1]);
        let mut members = up(&[1, 1]);
        members[1].share = 0.2;
        let to_it = (0..10_000)
            .filter(|turn| round_robin(&order, *turn, &members) == Some(1))
            .count();
        // Half the turns are its, and it takes a fifth of them.
        assert!((800..1200).contains(&to_it), "{to_it}");
    }

    #[test]
    fn least_conn_prefers_the_idle_and_follows_weights_among_equals() {
        let order = smooth_order(&[1, 1]);
        let mut members = up(&[1, 1]);
        members[0].in_flight = 3;
        assert!((0..10).all(|turn| least_conn(&order, turn, &members) == Some(1)));
        members[0].in_flight = 0;
        let ones = (0..100)
            .filter(|turn| least_conn(&order, *turn, &members) == Some(1))
            .count();
        assert_eq!(ones, 50);
        let order = smooth_order(&[3, 1]);
        let members = up(&[3, 1]);
        let ones = (0..100)
            .filter(|turn| least_conn(&order, *turn, &members) == Some(1))
            .count();
        assert_eq!(ones, 25, "idle members follow the weights");
    }

    #[test]
    fn the_hash_is_sticky_weighted_and_moves_only_the_clients_of_the_one_out() {
        let seeds = [11, 22, 33];
        let mut members = up(&[1, 1, 2]);
        let before: Vec<usize> = (0..4000u64)
            .map(|k| rendezvous(mix(k), &seeds, &members).unwrap())
            .collect();
        let third = before.iter().filter(|i| **i == 2).count();
        assert!((1800..2200).contains(&third), "weight 2 of 4: {third}");
        members[0].share = 0.0;
        for (k, was) in before.iter().enumerate() {
            let now = rendezvous(mix(k as u64), &seeds, &members).unwrap();
            if *was != 0 {
                assert_eq!(now, *was, "a client of a member still up stays");
            }
        }
    }
}
