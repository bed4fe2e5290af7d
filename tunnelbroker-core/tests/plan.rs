//! The address plan against DESIGN.md §2: every test vector, every rejected
//! pool, and the invariants as proptest properties.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use proptest::prelude::*;
use tunnelbroker_core::plan::{Allocator, Role, parse_prefix};
use tunnelbroker_core::{Assignment, ClientKind, ErrorKind, Ipv6Net, Pool};

fn pool(s: &str) -> Pool {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn net(s: &str) -> Ipv6Net {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn addr(s: &str) -> Ipv6Addr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

// ----- test vectors of DESIGN.md §2 ----------------------------------------

#[test]
fn join_pool_routing_and_hermit() {
    let p = pool("2001:638:500:f100::/56");
    assert_eq!(p.routing_net(), net("2001:638:500:f100::/64"));
    assert_eq!(p.hermit_net(), net("2001:638:500:f1ff::/64"));
    assert_eq!(p.network_count(), 256);
}

#[test]
fn join_pool_subnet_range() {
    let p = pool("2001:638:500:f100::/56");
    assert_eq!(p.first_subnet().prefix(), net("2001:638:500:f101::/64"));
    assert_eq!(p.last_subnet().prefix(), net("2001:638:500:f1fe::/64"));
    assert_eq!(p.subnet_capacity(), 254);
    assert_eq!(p.subnets().count(), 254);
    let all: Vec<_> = p.subnets().map(|s| s.prefix()).collect();
    assert_eq!(all.first(), Some(&net("2001:638:500:f101::/64")));
    assert_eq!(all.last(), Some(&net("2001:638:500:f1fe::/64")));
}

#[test]
fn join_pool_routing_net_of_f1ab() {
    let p = pool("2001:638:500:f100::/56");
    let s = p.subnet(net("2001:638:500:f1ab::/64")).unwrap();
    assert_eq!(s.tag(), 0xf1ab);
    assert_eq!(s.routing_net(), net("2001:638:500:f100::f1ab:0/112"));
    assert_eq!(s.server_end(), addr("2001:638:500:f100::f1ab:1"));
    assert_eq!(s.client_end(), addr("2001:638:500:f100::f1ab:2"));
    assert_eq!(s.server_link_local(), addr("fe80::f1ab:1"));
    assert_eq!(s.client_link_local(), addr("fe80::f1ab:2"));
}

#[test]
fn join_pool_routing_net_of_f101() {
    let p = pool("2001:638:500:f100::/56");
    let s = p.subnet(net("2001:638:500:f101::/64")).unwrap();
    assert_eq!(s.routing_net(), net("2001:638:500:f100::f101:0/112"));
    assert_eq!(s.server_end(), addr("2001:638:500:f100::f101:1"));
    assert_eq!(s.client_end(), addr("2001:638:500:f100::f101:2"));
    assert_eq!(s.server_link_local(), addr("fe80::f101:1"));
    assert_eq!(s.client_link_local(), addr("fe80::f101:2"));
}

#[test]
fn documentation_pool_has_the_same_shape() {
    let p = pool("2001:db8:0:f100::/56");
    assert_eq!(p.routing_net(), net("2001:db8:0:f100::/64"));
    assert_eq!(p.hermit_net(), net("2001:db8:0:f1ff::/64"));
    assert_eq!(p.first_subnet().prefix(), net("2001:db8:0:f101::/64"));
    assert_eq!(p.last_subnet().prefix(), net("2001:db8:0:f1fe::/64"));
    assert_eq!(p.subnet_capacity(), 254);
}

#[test]
fn slash_48_pool() {
    let p = pool("2001:db8:abcd::/48");
    assert_eq!(p.routing_net(), net("2001:db8:abcd::/64"));
    assert_eq!(p.hermit_net(), net("2001:db8:abcd:ffff::/64"));
    assert_eq!(p.first_subnet().prefix(), net("2001:db8:abcd:1::/64"));
    assert_eq!(p.last_subnet().prefix(), net("2001:db8:abcd:fffe::/64"));
    assert_eq!(p.subnet_capacity(), 65534);
    assert_eq!(p.subnets().count(), 65534);
    let s = p.subnet(net("2001:db8:abcd:1234::/64")).unwrap();
    assert_eq!(s.routing_net(), net("2001:db8:abcd::1234:0/112"));
    assert_eq!(s.server_end(), addr("2001:db8:abcd::1234:1"));
    assert_eq!(s.client_end(), addr("2001:db8:abcd::1234:2"));
    assert_eq!(s.server_link_local(), addr("fe80::1234:1"));
    assert_eq!(s.client_link_local(), addr("fe80::1234:2"));
}

#[test]
fn slash_62_pool() {
    let p = pool("2001:db8:0:f1fc::/62");
    assert_eq!(p.routing_net(), net("2001:db8:0:f1fc::/64"));
    assert_eq!(p.hermit_net(), net("2001:db8:0:f1ff::/64"));
    let subnets: Vec<_> = p.subnets().map(|s| s.prefix()).collect();
    assert_eq!(
        subnets,
        vec![net("2001:db8:0:f1fd::/64"), net("2001:db8:0:f1fe::/64")]
    );
    assert_eq!(p.subnet_capacity(), 2);
    let s = p.subnet(net("2001:db8:0:f1fe::/64")).unwrap();
    assert_eq!(s.routing_net(), net("2001:db8:0:f1fc::f1fe:0/112"));
}

#[test]
fn hermit_link_local_and_first_hermit() {
    let mut plan = Allocator::new(pool("2001:638:500:f100::/56"));
    let a = plan.allocate(ClientKind::Hermit).unwrap();
    let h = a.as_hermit().unwrap();
    assert_eq!(h.address(), addr("2001:638:500:f1ff::1"));
    assert_eq!(h.server_link_local(), addr("fe80::1"));
    assert_eq!(a.tunnel_address(), addr("2001:638:500:f1ff::1"));
}

#[test]
fn allocator_hands_out_the_lowest_first() {
    let mut plan = Allocator::new(pool("2001:638:500:f100::/56"));
    let a = plan.allocate(ClientKind::Subnet).unwrap();
    let b = plan.allocate(ClientKind::Subnet).unwrap();
    assert_eq!(a.prefix(), net("2001:638:500:f101::/64"));
    assert_eq!(b.prefix(), net("2001:638:500:f102::/64"));
    plan.release(&a).unwrap();
    assert_eq!(plan.allocate(ClientKind::Subnet).unwrap(), a);
}

#[test]
fn slash_62_pool_is_exhausted_after_two_subnets() {
    let mut plan = Allocator::new(pool("2001:db8:0:f1fc::/62"));
    plan.allocate(ClientKind::Subnet).unwrap();
    plan.allocate(ClientKind::Subnet).unwrap();
    let err = plan.allocate(ClientKind::Subnet).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exhausted);
    assert!(err.to_string().contains("no free subnet"), "{err}");
}

#[test]
fn roles_of_addresses() {
    let p = pool("2001:638:500:f100::/56");
    assert_eq!(
        p.role_of(addr("2001:638:500:f100::f1ab:1")),
        Some(Role::Routing)
    );
    assert_eq!(p.role_of(addr("2001:638:500:f1ab::1")), Some(Role::Subnet));
    assert_eq!(p.role_of(addr("2001:638:500:f1ff::1")), Some(Role::Hermit));
    assert_eq!(p.role_of(addr("2001:638:500:f200::1")), None);
}

// ----- refusals ------------------------------------------------------------

/// Every rejected pool of DESIGN.md §2 and the hostile inputs of STYLE.md,
/// with a word that the reason must contain.
const BAD_POOLS: &[(&str, &str)] = &[
    ("2001:db8::/47", "too short"),
    ("2001:db8::/32", "too short"),
    ("::/0", "too short"),
    ("2001:db8::/63", "too long"),
    ("2001:db8::/64", "too long"),
    ("2001:db8::/128", "too long"),
    ("2001:db8::1/56", "host bits"),
    (
        "::/48",
        "global unicast (2000::/3) or unique local (fc00::/7)",
    ),
    (
        "fe80::/48",
        "global unicast (2000::/3) or unique local (fc00::/7)",
    ),
    (
        "ff02::/48",
        "global unicast (2000::/3) or unique local (fc00::/7)",
    ),
    ("::ffff:0:0/96", "too long"),
    ("1fff:ffff:ffff::/48", "global unicast"),
    ("4000::/48", "global unicast"),
    ("fe00::/48", "unique local"),
    ("2001:db8:0:f101::/56", "host bits"),
    ("10.0.0.0/8", "IPv4"),
    ("192.0.2.0/24", "IPv4"),
    ("2001:db8::", "no prefix length"),
    ("hello", "not an IPv6 prefix"),
    ("2001:db8::/", "not an IPv6 prefix"),
    ("2001:db8::/129", "not an IPv6 prefix"),
    ("2001:db8::/-1", "not an IPv6 prefix"),
    ("2001:db8::/56/56", "not an IPv6 prefix"),
    ("2001:db8:::/56", "not an IPv6 prefix"),
    ("", "empty"),
    ("   ", "empty"),
    ("../../etc/passwd", "not an IPv6 prefix"),
    ("2001:db8::/56; rm -rf /", "not an IPv6 prefix"),
    ("$(reboot)", "not an IPv6 prefix"),
    ("2001:db8::/56\n2001:db8::/48", "not an IPv6 prefix"),
    ("２００１:db8::/56", "not an IPv6 prefix"),
    ("2001:db8::/５６", "not an IPv6 prefix"),
    ("jörg", "not an IPv6 prefix"),
];

#[test]
fn rejected_pools_say_why() {
    for (input, why) in BAD_POOLS {
        let err = match input.parse::<Pool>() {
            Ok(p) => panic!("{input:?} was accepted as {p}"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{input:?}: {msg}");
        assert!(msg.contains(why), "{input:?}: {msg:?} lacks {why:?}");
        assert!(msg.starts_with("invalid pool "), "{msg}");
        assert!(
            !msg.contains('\n'),
            "{input:?}: message has a newline: {msg:?}"
        );
    }
}

#[test]
fn pools_must_be_global_unicast_or_unique_local() {
    for ok in [
        "2001:db8::/48",
        "2001:db8:0:f100::/56",
        "2000::/48",
        "3fff:ffff:ffff:fffc::/62",
        "fc00::/48",
        "fdff:ffff:ffff:ff00::/56",
    ] {
        ok.parse::<Pool>().unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in ["::/48", "fe80::/48", "ff02::/48", "fe00::/48", "4000::/48"] {
        let msg = bad.parse::<Pool>().unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "invalid pool \"{bad}\": a pool must be global unicast (2000::/3) or unique local (fc00::/7)"
            )
        );
    }
}

#[test]
fn rejected_pools_say_what_is_allowed() {
    let msg = "2001:db8::/47".parse::<Pool>().unwrap_err().to_string();
    assert!(msg.contains("/48 to /62"), "{msg}");
    let msg = "2001:db8::/63".parse::<Pool>().unwrap_err().to_string();
    assert!(msg.contains("/48 to /62"), "{msg}");
    let msg = "2001:db8::1/56".parse::<Pool>().unwrap_err().to_string();
    assert!(msg.contains("did you mean 2001:db8::/56"), "{msg}");
}

#[test]
fn overlong_pool_text_is_shortened_in_the_message() {
    let long = format!("2001:db8::/56{}", "0".repeat(100_000));
    let msg = long.parse::<Pool>().unwrap_err().to_string();
    assert!(msg.len() < 300, "message is {} bytes", msg.len());
    let long = "a".repeat(1 << 20);
    let msg = long.parse::<Pool>().unwrap_err().to_string();
    assert!(msg.len() < 300, "message is {} bytes", msg.len());
}

#[test]
fn pool_new_checks_like_parse() {
    for (text, ok) in [
        ("2001:db8::/48", true),
        ("2001:db8::/62", true),
        ("2001:db8::/47", false),
        ("2001:db8::/63", false),
        ("2001:db8::1/56", false),
    ] {
        assert_eq!(Pool::new(net(text)).is_ok(), ok, "{text}");
        assert_eq!(Pool::try_from(net(text)).is_ok(), ok, "{text}");
    }
}

#[test]
fn pool_text_round_trips_and_trims() {
    for text in [
        "2001:db8:0:f100::/56",
        "2001:db8:abcd::/48",
        "2001:db8:0:f1fc::/62",
    ] {
        assert_eq!(pool(text).to_string(), text);
    }
    assert_eq!(
        pool(" 2001:DB8:0:F100:0::/56\n").to_string(),
        "2001:db8:0:f100::/56"
    );
}

#[test]
fn requests_outside_the_pool_or_in_the_wrong_role_are_refused() {
    let mut plan = Allocator::new(pool("2001:db8:0:f100::/56"));
    let cases: &[(ClientKind, &str, ErrorKind, &str)] = &[
        (
            ClientKind::Subnet,
            "2001:db8:0:f200::/64",
            ErrorKind::InvalidInput,
            "outside the pool",
        ),
        (
            ClientKind::Subnet,
            "2001:db8:0:f100::/64",
            ErrorKind::InvalidInput,
            "routing /64",
        ),
        (
            ClientKind::Subnet,
            "2001:db8:0:f1ff::/64",
            ErrorKind::InvalidInput,
            "hermit /64",
        ),
        (
            ClientKind::Subnet,
            "2001:db8:0:f1ab::/56",
            ErrorKind::InvalidInput,
            "a /64",
        ),
        (
            ClientKind::Subnet,
            "2001:db8:0:f1ab::/65",
            ErrorKind::InvalidInput,
            "a /64",
        ),
        (
            ClientKind::Hermit,
            "2001:db8:0:f1ab::1/128",
            ErrorKind::InvalidInput,
            "subnet /64",
        ),
        (
            ClientKind::Hermit,
            "2001:db8:0:f100::1/128",
            ErrorKind::InvalidInput,
            "routing /64",
        ),
        (
            ClientKind::Hermit,
            "2001:db8:0:f1ff::/128",
            ErrorKind::InvalidInput,
            "anycast",
        ),
        (
            ClientKind::Hermit,
            "2001:db8:0:f1ff:fdff:ffff:ffff:ff80/128",
            ErrorKind::InvalidInput,
            "RFC 2526",
        ),
        (
            ClientKind::Hermit,
            "2001:db8:0:f1ff::/64",
            ErrorKind::InvalidInput,
            "/128",
        ),
        (
            ClientKind::Hermit,
            "2001:db8:1::1/128",
            ErrorKind::InvalidInput,
            "outside the pool",
        ),
    ];
    for (kind, text, ek, why) in cases {
        let err = plan.request(*kind, net(text)).unwrap_err();
        assert_eq!(err.kind(), *ek, "{kind} {text}: {err}");
        assert!(
            err.to_string().contains(why),
            "{kind} {text}: {err:?} lacks {why:?}"
        );
    }
    assert_eq!(plan.counts().subnets_used, 0);
    assert_eq!(plan.counts().hermits_used, 0);

    let a = plan
        .request(ClientKind::Subnet, net("2001:db8:0:f1ab::/64"))
        .unwrap();
    let err = plan
        .request(ClientKind::Subnet, net("2001:db8:0:f1ab::/64"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("already assigned"), "{err}");
    plan.release(&a).unwrap();
    assert_eq!(plan.release(&a).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn assignments_of_another_pool_are_refused() {
    let mut mine = Allocator::new(pool("2001:db8:0:f100::/56"));
    let mut other = Allocator::new(pool("2001:db8:0:f200::/56"));
    let foreign = other.allocate(ClientKind::Subnet).unwrap();
    assert!(mine.insert(&foreign).is_err());
    assert!(mine.release(&foreign).is_err());
    assert!(!mine.is_assigned(&foreign));
    // Same subnet /64, but a routing net that belongs to a wider pool.
    let wide = pool("2001:db8::/48");
    let s = wide.subnet(net("2001:db8:0:f1ab::/64")).unwrap();
    assert!(mine.insert(&Assignment::Subnet(s)).is_err());
}

#[test]
fn parse_prefix_refuses_hostile_input() {
    for bad in [
        "",
        "hello",
        "10.0.0.1",
        "10.0.0.0/8",
        "2001:db8::1/64",
        "../2001:db8::/64",
        "2001:db8::/64 && reboot",
        "２００１:db8::",
        &"1".repeat(10_000),
    ] {
        let err = parse_prefix(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        assert!(err.to_string().len() < 300);
    }
}

#[test]
fn deserialising_a_bad_allocator_fails_cleanly() {
    for bad in [
        r#"{"pool":"2001:db8::1/56","subnets":[],"hermits":[]}"#,
        r#"{"pool":"2001:db8::/56","subnets":[{"first":"2001:db8:0:ff::/64","last":"2001:db8:0:1::/64"}],"hermits":[]}"#,
        r#"{"pool":"2001:db8::/56","subnets":[{"first":"2001:db8::/64","last":"2001:db8::/64"}],"hermits":[]}"#,
        r#"{"pool":"2001:db8::/56","subnets":[{"first":"2001:db8:0:1::5/128","last":"2001:db8:0:1::5/128"}],"hermits":[]}"#,
        r#"{"pool":"2001:db8::/56","subnets":[{"first":"2001:db8:0:1::/64","last":"2001:db8:0:2::/64"},{"first":"2001:db8:0:2::/64","last":"2001:db8:0:3::/64"}],"hermits":[]}"#,
        r#"{"pool":"2001:db8::/56","subnets":[],"hermits":[{"first":"2001:db8:0:ff::9","last":"2001:db8:0:ff::1"}]}"#,
        r#"{"pool":"2001:db8::/56","subnets":[],"hermits":[{"first":"2001:db8:0:ff::1","last":"2001:db8:0:ff::9"},{"first":"2001:db8:0:ff::5","last":"2001:db8:0:ff::6"}]}"#,
        r#"{"pool":"2001:db8::/56","subnets":[],"hermits":[{"first":"2001:db8:0:ff::1","last":"2001:db8:0:ff:ffff:ffff:ffff:ffff"}]}"#,
        r#"{"pool":"2001:db8::/56","subnets":[],"hermits":[{"first":"2001:db8:0:ff::","last":"2001:db8:0:ff::1"}]}"#,
        r#"{"pool":"2001:db8::/56","subnets":[],"hermits":[{"first":"2001:db8:0:1::1","last":"2001:db8:0:1::1"}]}"#,
        r#"{"pool":"2001:db8::/56"}"#,
        r#"[]"#,
    ] {
        assert!(serde_json::from_str::<Allocator>(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_run_of_hermits_is_one_entry_in_json() {
    let mut plan = Allocator::new(pool("2001:db8:0:f100::/56"));
    for _ in 0..1000 {
        plan.allocate(ClientKind::Hermit).unwrap();
    }
    let json = serde_json::to_string(&plan).unwrap();
    assert!(json.len() < 300, "{json}");
    let back: Allocator = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);
}

// ----- properties ----------------------------------------------------------

/// One step of a random workload.
#[derive(Debug, Clone)]
enum Op {
    Allocate(ClientKind),
    /// Request the subnet with this number (modulo the pool's /64 count, so
    /// that the routing and hermit /64s are asked for too).
    RequestSubnet(u64),
    /// Request the hermit with this interface identifier (small, so that
    /// collisions with allocated ones happen, or any).
    RequestHermit(u64),
    /// Release the live assignment with this index (modulo their count).
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![Just(ClientKind::Hermit), Just(ClientKind::Subnet)].prop_map(Op::Allocate),
        2 => any::<u64>().prop_map(Op::RequestSubnet),
        1 => (0u64..40).prop_map(Op::RequestHermit),
        1 => any::<u64>().prop_map(Op::RequestHermit),
        2 => any::<usize>().prop_map(Op::Release),
    ]
}

/// A random pool of length 48 to 62 anywhere in global unicast (2000::/3)
/// or unique local (fc00::/7) space.
fn any_pool() -> impl Strategy<Value = Pool> {
    (48u8..=62, any::<u128>()).prop_map(|(len, bits)| {
        let bits = if bits >> 127 == 1 {
            bits & !(0x7f << 121) | (0x7e << 121)
        } else {
            bits & !(7 << 125) | (1 << 125)
        };
        Pool::new(Ipv6Net::new_assert(Ipv6Addr::from(bits), len).trunc()).expect("valid pool")
    })
}

/// Runs `ops` and returns the live assignments as the test's own model.
fn run(plan: &mut Allocator, ops: &[Op]) -> Vec<Assignment> {
    let p = plan.pool();
    let mut live: Vec<Assignment> = Vec::new();
    for op in ops {
        let result = match op {
            Op::Allocate(kind) => plan.allocate(*kind),
            Op::RequestSubnet(n) => {
                let n = n % p.network_count();
                let prefix = p.network(n).expect("n < count");
                plan.request(ClientKind::Subnet, prefix)
            }
            Op::RequestHermit(iid) => {
                let a = Ipv6Addr::from(u128::from(p.hermit_net().network()) | u128::from(*iid));
                plan.request(ClientKind::Hermit, Ipv6Net::from(a))
            }
            Op::Release(i) => {
                if !live.is_empty() {
                    let a = live.remove(i % live.len());
                    plan.release(&a).expect("a live assignment can be released");
                    assert!(!plan.is_assigned(&a));
                }
                continue;
            }
        };
        if let Ok(a) = result {
            // Never hands out a live assignment.
            assert!(!live.contains(&a), "{a} handed out twice");
            assert!(plan.is_assigned(&a));
            live.push(a);
        }
    }
    live
}

fn overlaps(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(b) || b.contains(a)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Failing cases are saved next to this file, to be committed as regressions.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("tests/plan.proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_hold(p in any_pool(), ops in prop::collection::vec(op(), 0..120)) {
        let mut plan = Allocator::new(p);
        let live = run(&mut plan, &ops);

        // The allocator's view equals the model, in address order.
        let mut model = live.clone();
        model.sort_by_key(|a| a.prefix());
        let listed: Vec<_> = plan.iter().collect();
        prop_assert_eq!(&listed, &model);

        // Counts are consistent with iter().
        let c = plan.counts();
        let subnets = listed.iter().filter(|a| a.kind() == ClientKind::Subnet).count() as u64;
        let hermits = listed.iter().filter(|a| a.kind() == ClientKind::Hermit).count() as u64;
        prop_assert_eq!(c.subnets_used, subnets);
        prop_assert_eq!(c.hermits_used, hermits);
        prop_assert_eq!(c.subnets_used + c.subnets_free, p.subnet_capacity());
        prop_assert_eq!(c.hermits_used + c.hermits_free, p.hermit_capacity());

        let mut routing_nets = BTreeSet::new();
        for (i, a) in listed.iter().enumerate() {
            // In the pool and in its role's /64s.
            prop_assert!(p.net().contains(&a.prefix()));
            match a {
                Assignment::Hermit(h) => {
                    prop_assert_eq!(p.role_of(h.address()), Some(Role::Hermit));
                    prop_assert!(p.hermit_net().contains(&h.address()));
                }
                Assignment::Subnet(s) => {
                    prop_assert_eq!(s.prefix().prefix_len(), 64);
                    prop_assert_eq!(p.role_of(s.prefix().network()), Some(Role::Subnet));
                    prop_assert!(p.routing_net().contains(&s.routing_net()));
                    prop_assert_eq!(s.routing_net().prefix_len(), 112);
                    prop_assert_eq!(s.routing_net().network().segments()[6], s.tag());
                    prop_assert!(s.routing_net().contains(&s.server_end()));
                    prop_assert!(s.routing_net().contains(&s.client_end()));
                    // Routing nets are unique and never inside a subnet.
                    prop_assert!(routing_nets.insert(s.routing_net()));
                    for b in &listed {
                        prop_assert!(!overlaps(&s.routing_net(), &b.prefix()));
                    }
                }
            }
            // No two live assignments overlap.
            for b in &listed[i + 1..] {
                prop_assert!(!overlaps(&a.prefix(), &b.prefix()), "{} overlaps {}", a, b);
            }
            // Addresses map back to exactly one owner.
            let probes: Vec<Ipv6Addr> = match a {
                Assignment::Hermit(h) => vec![h.address()],
                Assignment::Subnet(s) => vec![
                    s.prefix().network(),
                    s.prefix().broadcast(),
                    s.lan_address(),
                    s.server_end(),
                    s.client_end(),
                    s.routing_net().network(),
                    s.routing_net().broadcast(),
                ],
            };
            for probe in probes {
                prop_assert_eq!(plan.lookup(probe), Some(*a), "lookup {}", probe);
                let owners = listed.iter().filter(|b| b.owns(probe)).count();
                prop_assert_eq!(owners, 1, "{} has {} owners", probe, owners);
            }
        }
    }

    #[test]
    fn lookup_of_any_address_agrees_with_owns(
        p in any_pool(),
        ops in prop::collection::vec(op(), 0..60),
        probes in prop::collection::vec((0u64..4, any::<u64>(), 0u64..8), 0..64),
    ) {
        let mut plan = Allocator::new(p);
        let live = run(&mut plan, &ops);
        for (which, n, low) in probes {
            // Probe the routing /64 near the /112s, a subnet, the hermit /64 near its low end, anywhere.
            let base = u128::from(p.net().network());
            let bits = match which {
                0 => base | (u128::from(n & 0xffff) << 16) | u128::from(low),
                1 => base | (u128::from(n % p.network_count()) << 64) | u128::from(low),
                2 => u128::from(p.hermit_net().network()) | u128::from(low + (n % 64)),
                _ => base ^ (u128::from(n) << 32),
            };
            let probe = Ipv6Addr::from(bits);
            let owners: Vec<_> = live.iter().filter(|a| a.owns(probe)).copied().collect();
            prop_assert!(owners.len() <= 1, "{} has owners {:?}", probe, owners);
            prop_assert_eq!(plan.lookup(probe), owners.first().copied(), "lookup {}", probe);
        }
    }

    #[test]
    fn release_then_allocate_never_hands_out_a_live_one(
        p in any_pool(),
        ops in prop::collection::vec(op(), 0..80),
        kinds in prop::collection::vec(any::<bool>(), 1..20),
    ) {
        let mut plan = Allocator::new(p);
        let mut live = run(&mut plan, &ops);
        if let Some(a) = live.pop() {
            plan.release(&a).unwrap();
        }
        for k in kinds {
            let kind = if k { ClientKind::Subnet } else { ClientKind::Hermit };
            if let Ok(a) = plan.allocate(kind) {
                prop_assert!(!live.contains(&a), "{} handed out while live", a);
                live.push(a);
            }
        }
    }

    #[test]
    fn same_ops_give_the_same_plan(p in any_pool(), ops in prop::collection::vec(op(), 0..100)) {
        let mut one = Allocator::new(p);
        let mut two = Allocator::new(p);
        let a = run(&mut one, &ops);
        let b = run(&mut two, &ops);
        prop_assert_eq!(a, b);
        prop_assert_eq!(&one, &two);
        prop_assert_eq!(one.iter().collect::<Vec<_>>(), two.iter().collect::<Vec<_>>());
    }

    #[test]
    fn serde_round_trips(p in any_pool(), ops in prop::collection::vec(op(), 0..100)) {
        let mut plan = Allocator::new(p);
        let live = run(&mut plan, &ops);
        let json = serde_json::to_string(&plan).unwrap();
        let back: Allocator = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &plan);
        prop_assert_eq!(back.counts(), plan.counts());
        for a in live {
            let json = serde_json::to_string(&a).unwrap();
            let back: Assignment = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, a);
            let text = a.prefix().to_string();
            prop_assert_eq!(Assignment::parse_in(&p, a.kind(), &text).unwrap(), a);
        }
        let pj = serde_json::to_string(&p).unwrap();
        prop_assert_eq!(serde_json::from_str::<Pool>(&pj).unwrap(), p);
    }

    #[test]
    fn pool_text_round_trips(p in any_pool()) {
        prop_assert_eq!(p.to_string().parse::<Pool>().unwrap(), p);
    }

    #[test]
    fn pool_parse_never_panics(s in "\\PC{0,80}") {
        if let Ok(p) = s.parse::<Pool>() {
            prop_assert_eq!(p.to_string().parse::<Pool>().unwrap(), p);
        }
        let _ = parse_prefix(&s);
    }

    #[test]
    fn every_subnet_of_a_pool_is_in_its_role(p in any_pool(), n in any::<u64>()) {
        let n = 1 + n % p.subnet_capacity();
        let s = p.subnet_by_number(n).unwrap();
        prop_assert_eq!(p.network_number(s.prefix().network()), Some(n));
        prop_assert_eq!(p.subnet(s.prefix()).unwrap(), s);
    }
}
