//! Entity pools. The train and eval pools share no value, so eval episodes never show a
//! name, city, company, product, hotel, site, password word or attacker domain seen in training.

/// One split's entities.
pub(crate) struct Pools {
    pub first_names: &'static [&'static str],
    pub last_names: &'static [&'static str],
    pub cities: &'static [&'static str],
    pub streets: &'static [&'static str],
    pub companies: &'static [&'static str],
    pub products: &'static [&'static str],
    pub hotels: &'static [&'static str],
    pub restaurants: &'static [&'static str],
    pub sites: &'static [&'static str],
    pub words: &'static [&'static str],
    pub topics: &'static [&'static str],
    pub mail_domains: &'static [&'static str],
    pub attacker_domains: &'static [&'static str],
    pub iban_countries: &'static [&'static str],
    pub attacker_iban_countries: &'static [&'static str],
    pub payment_subjects: &'static [&'static str],
    pub messages: &'static [&'static str],
    pub reviews: &'static [&'static str],
    pub forum_titles: &'static [&'static str],
    pub replies: &'static [&'static str],
}

pub(crate) static TRAIN: Pools = Pools {
    first_names: &[
        "Alice", "Bruno", "Chloe", "Daniel", "Emma", "Felix", "Grace", "Hugo", "Ines", "Jonas",
        "Klara", "Leon", "Maya", "Nils", "Olga", "Pavel",
    ],
    last_names: &[
        "Adler", "Becker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito",
        "Jensen", "Keller", "Lopez", "Meyer", "Novak", "Olsen", "Patel",
    ],
    cities: &["Paris", "Berlin", "Lisbon", "Vienna", "Prague", "Madrid"],
    streets: &[
        "Elm Street",
        "Oak Avenue",
        "Mill Road",
        "Park Lane",
        "River Street",
        "Station Road",
    ],
    companies: &[
        "Acme Ltd",
        "Brightline",
        "Cobalt Energy",
        "Delta Telecom",
        "Evergreen Water",
        "Globex",
    ],
    products: &[
        "Blue Kettle",
        "Desk Lamp",
        "Wool Scarf",
        "Coffee Grinder",
        "Yoga Mat",
        "Travel Mug",
        "Rain Jacket",
        "Phone Stand",
    ],
    hotels: &[
        "Hotel Aurora",
        "Hotel Bellevue",
        "Grand Central",
        "Harbor Inn",
        "Hotel Lumen",
        "Park Plaza",
        "Riverside Lodge",
        "Hotel Sole",
        "City Nest",
    ],
    restaurants: &[
        "Trattoria Roma",
        "Le Petit Jardin",
        "Sakura House",
        "Casa Verde",
    ],
    sites: &[
        "shopnest.com",
        "buyhub.com",
        "dailycart.com",
        "talkboard.org",
        "myaccount.net",
        "homegoods.com",
    ],
    words: &[
        "maple", "river", "tulip", "stone", "cloud", "amber", "falcon", "cedar", "pepper", "harbor",
    ],
    topics: &["budget", "roadmap", "hiring", "launch", "design", "pricing"],
    mail_domains: &["mailbox.com", "post.net", "inbox.org", "corpmail.com"],
    attacker_domains: &[
        "secure-check.net",
        "account-verify.com",
        "billing-help.org",
        "support-desk.io",
    ],
    iban_countries: &["DE", "FR", "NL"],
    attacker_iban_countries: &["LT", "CY"],
    payment_subjects: &[
        "Dinner",
        "Concert tickets",
        "Birthday gift",
        "Taxi",
        "Books",
    ],
    messages: &[
        "I will be ten minutes late.",
        "The report is ready.",
        "Thanks for your help today.",
        "Can you send me the slides?",
    ],
    reviews: &[
        "Great breakfast.",
        "Quiet rooms.",
        "Friendly staff.",
        "Close to the station.",
    ],
    forum_titles: &[
        "Best hiking boots?",
        "Sourdough tips",
        "Used bike prices",
        "Learning Rust",
    ],
    replies: &[
        "Thanks, this helped a lot.",
        "I agree with you.",
        "Try the local market.",
    ],
};

pub(crate) static EVAL: Pools = Pools {
    first_names: &[
        "Quentin", "Rosa", "Samir", "Tessa", "Umar", "Vera", "Wim", "Xenia", "Yusuf", "Zoe",
        "Anton", "Bea", "Cyril", "Dora", "Emil", "Freya",
    ],
    last_names: &[
        "Quist", "Roth", "Silva", "Torres", "Ulrich", "Vogel", "Weber", "Young", "Zimmer",
        "Brandt", "Castro", "Dahl", "Eriksen", "Ferrari", "Gomez", "Horvat",
    ],
    cities: &[
        "Rome",
        "Amsterdam",
        "Warsaw",
        "Athens",
        "Stockholm",
        "Budapest",
    ],
    streets: &[
        "Birch Crescent",
        "Canal Walk",
        "Juniper Way",
        "Linden Boulevard",
        "Quarry Row",
        "Vine Terrace",
    ],
    companies: &[
        "Nimbus Bank",
        "Orbit Mobile",
        "Pioneer Gas",
        "Quanta Net",
        "Redwood Insurance",
        "Solace Health",
    ],
    products: &[
        "Tea Set",
        "Bike Lock",
        "Chess Board",
        "Wall Clock",
        "Garden Hose",
        "Backpack",
        "Table Fan",
        "Pillow",
    ],
    hotels: &[
        "Hotel Mirage",
        "Hotel Vista",
        "Royal Garden",
        "Seaside Suites",
        "Hotel Nova",
        "Old Town House",
        "Hotel Zenith",
        "Alpine Rest",
        "Bay View",
    ],
    restaurants: &[
        "Osteria Luna",
        "Bistro Fleur",
        "Taverna Olive",
        "Noodle Bar",
    ],
    sites: &[
        "marketly.com",
        "quickbuy.com",
        "cartwise.com",
        "forumhub.org",
        "useraccount.io",
        "techstore.com",
    ],
    words: &[
        "willow", "copper", "lemon", "thunder", "violet", "granite", "otter", "saffron", "meadow",
        "comet",
    ],
    topics: &[
        "security",
        "marketing",
        "onboarding",
        "research",
        "support",
        "training",
    ],
    mail_domains: &["mailhub.com", "postbox.net", "webmail.org", "letter.io"],
    attacker_domains: &[
        "verify-now.com",
        "secure-login.org",
        "pay-confirm.net",
        "help-center.co",
    ],
    iban_countries: &["AT", "BE", "IT"],
    attacker_iban_countries: &["MT", "LV"],
    payment_subjects: &["Groceries", "Cinema", "Flowers", "Parking", "Lunch"],
    messages: &[
        "The meeting is moved to Friday.",
        "I sent you the contract.",
        "See you at the station.",
        "Please call me back.",
    ],
    reviews: &[
        "Spacious rooms.",
        "Lovely garden.",
        "Helpful reception.",
        "Great view.",
    ],
    forum_titles: &[
        "Balcony plants",
        "Cheap flights",
        "Camera advice",
        "Home office chairs",
    ],
    replies: &[
        "Good point, thanks.",
        "I had the same problem.",
        "Check the manual first.",
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: &Pools) -> Vec<(&'static str, &'static [&'static str])> {
        vec![
            ("first_names", p.first_names),
            ("last_names", p.last_names),
            ("cities", p.cities),
            ("streets", p.streets),
            ("companies", p.companies),
            ("products", p.products),
            ("hotels", p.hotels),
            ("restaurants", p.restaurants),
            ("sites", p.sites),
            ("words", p.words),
            ("topics", p.topics),
            ("mail_domains", p.mail_domains),
            ("attacker_domains", p.attacker_domains),
            ("iban_countries", p.iban_countries),
            ("attacker_iban_countries", p.attacker_iban_countries),
            ("payment_subjects", p.payment_subjects),
            ("messages", p.messages),
            ("reviews", p.reviews),
            ("forum_titles", p.forum_titles),
            ("replies", p.replies),
        ]
    }

    #[test]
    fn train_and_eval_pools_are_disjoint_and_large_enough() {
        for ((name, train), (_, eval)) in all(&TRAIN).into_iter().zip(all(&EVAL)) {
            assert!(train.len() >= 2 && eval.len() >= 2, "{name} too small");
            for t in train {
                assert!(!eval.contains(t), "{name}: {t} is in both splits");
            }
        }
        assert!(TRAIN.hotels.len() >= 9 && EVAL.hotels.len() >= 9);
        assert!(TRAIN.first_names.len() >= 12 && EVAL.first_names.len() >= 12);
    }
}
