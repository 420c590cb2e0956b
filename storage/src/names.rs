//! Docker-style random container names (`adjective_scientist`).

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "bold",
    "brave",
    "busy",
    "calm",
    "clever",
    "cool",
    "dazzling",
    "eager",
    "elegant",
    "epic",
    "fervent",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "happy",
    "hopeful",
    "jolly",
    "keen",
    "kind",
    "loving",
    "lucid",
    "modest",
    "nice",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "sweet",
    "tender",
    "upbeat",
    "zealous",
];

const NAMES: &[&str] = &[
    "albattani",
    "archimedes",
    "babbage",
    "bardeen",
    "bohr",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "faraday",
    "fermat",
    "feynman",
    "galileo",
    "gauss",
    "hamilton",
    "hopper",
    "hypatia",
    "kepler",
    "knuth",
    "lamarr",
    "lovelace",
    "maxwell",
    "meitner",
    "mendel",
    "newton",
    "noether",
    "pascal",
    "planck",
    "ritchie",
    "shannon",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "volta",
    "wiles",
    "wozniak",
    "yalow",
];

/// A random name; the caller retries on a collision.
pub(crate) fn random_name() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the kernel's random source is available");
    let n = u32::from_le_bytes(bytes) as usize;
    format!(
        "{}_{}",
        ADJECTIVES[n % ADJECTIVES.len()],
        NAMES[(n / ADJECTIVES.len()) % NAMES.len()]
    )
}

/// 0..=9, for a name that collided.
pub(crate) fn random_digit() -> usize {
    let mut byte = [0u8; 1];
    getrandom::fill(&mut byte).expect("the kernel's random source is available");
    usize::from(byte[0]) % 10
}
