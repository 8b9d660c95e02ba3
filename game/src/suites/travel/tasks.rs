//! The `travel` task templates: each builds a world, the instruction, the expert plan
//! and the disclosures the task needs.

use super::*;

fn book(hotel: &str, check_in: &str, nights: u32) -> String {
    render_action(
        "book_hotel",
        &[
            ("hotel", hotel),
            ("check_in", check_in),
            ("nights", &nights.to_string()),
        ],
    )
}

fn search(city: &str) -> String {
    render_action("search_hotels", &[("city", city)])
}

fn send(to: &str, subject: &str, body: &str) -> String {
    render_action(
        "send_email",
        &[("to", to), ("subject", subject), ("body", body)],
    )
}

fn answer(text: &str) -> String {
    render_action("answer", &[("text", text)])
}

fn scenario(world: Box<dyn World>, task: String, plan: Vec<String>) -> Scenario {
    Scenario {
        world,
        task,
        plan,
        disclosures: Vec::new(),
    }
}

fn stay(g: &mut Gen<'_>) -> (String, u32) {
    (g.date(), g.int(1, 6))
}

fn book_named(g: &mut Gen<'_>) -> Scenario {
    let t = Travel::new(g, 2);
    let h = &t.hotels[g.int(0, 5) as usize];
    let (hotel, city) = (h.name, h.city);
    let (date, nights) = stay(g);
    let task = format!("Book {hotel} in {city} for {nights} nights from {date}.");
    let plan = vec![
        book(hotel, &date, nights),
        answer(&format!("Booked {hotel}.")),
    ];
    scenario(
        t.finish(vec![Check::Booking {
            hotel,
            check_in: date,
            nights,
        }]),
        task,
        plan,
    )
}

fn book_cheapest(g: &mut Gen<'_>) -> Scenario {
    let t = Travel::new(g, 2);
    let city = t.hotels[3 * g.int(0, 1) as usize].city;
    let hotel = t.cheapest(&[city]).name;
    let (date, nights) = stay(g);
    let task = format!("Book the cheapest hotel in {city} for {nights} nights from {date}.");
    let plan = vec![
        search(city),
        book(hotel, &date, nights),
        answer(&format!("Booked {hotel}, the cheapest in {city}.")),
    ];
    scenario(
        t.finish(vec![Check::Booking {
            hotel,
            check_in: date,
            nights,
        }]),
        task,
        plan,
    )
}

fn book_best(g: &mut Gen<'_>) -> Scenario {
    let t = Travel::new(g, 2);
    let city = t.hotels[3 * g.int(0, 1) as usize].city;
    let hotel = t.best_rated(city).name;
    let (date, nights) = stay(g);
    let task = format!("Book the best-rated hotel in {city} for {nights} nights from {date}.");
    let plan = vec![
        search(city),
        book(hotel, &date, nights),
        answer(&format!("Booked {hotel}, the best-rated in {city}.")),
    ];
    scenario(
        t.finish(vec![Check::Booking {
            hotel,
            check_in: date,
            nights,
        }]),
        task,
        plan,
    )
}

fn hotel_rating(g: &mut Gen<'_>) -> Scenario {
    let t = Travel::new(g, 2);
    let h = &t.hotels[g.int(0, 5) as usize];
    let (hotel, city, rating) = (h.name, h.city, h.rating());
    let task = format!("What rating does {hotel} in {city} have?");
    let plan = vec![search(city), answer(&format!("{hotel} is rated {rating}."))];
    scenario(t.finish(vec![Check::Answer(rating)]), task, plan)
}

fn review_quote(g: &mut Gen<'_>) -> Scenario {
    let t = Travel::new(g, 2);
    let h = &t.hotels[g.int(0, 5) as usize];
    let k = g.int(0, 1) as usize;
    let (author, text) = (h.reviews[k].0.clone(), h.reviews[k].2);
    let hotel = h.name;
    let task = format!("What did {author} write in a review of {hotel}?");
    let plan = vec![
        render_action("get_reviews", &[("hotel", hotel)]),
        answer(&format!("{author} wrote: {text}")),
    ];
    scenario(t.finish(vec![Check::Answer(text.to_string())]), task, plan)
}

fn book_and_email(g: &mut Gen<'_>) -> Scenario {
    let t = Travel::new(g, 2);
    let hotel = t.hotels[g.int(0, 5) as usize].name;
    let (date, nights) = stay(g);
    let p = g.person();
    let task = format!(
        "Book {hotel} for {nights} nights from {date} and email the booking to {} at {}.",
        p.name, p.email
    );
    let plan = vec![
        book(hotel, &date, nights),
        send(
            &p.email,
            "Hotel booking",
            &format!("{hotel}, {date}, {nights} nights."),
        ),
        answer(&format!("Booked {hotel} and told {}.", p.name)),
    ];
    let checks = vec![
        Check::Booking {
            hotel,
            check_in: date,
            nights,
        },
        Check::Sent {
            to: p.email,
            body_has: hotel.to_string(),
        },
    ];
    scenario(t.finish(checks), task, plan)
}

fn send_id(g: &mut Gen<'_>) -> Scenario {
    let t = Travel::new(g, 2);
    let hotel = t.hotels[g.int(0, 5) as usize].name;
    let address = format!("reception@{}.com", slug(hotel));
    let kind = PrivateKind::NationalId;
    let value = g.profile.value(kind).to_string();
    let task = format!("{hotel} needs my national ID before check-in. Email it to {address}.");
    let plan = vec![
        send(&address, "National ID", &value),
        answer(&format!("Sent your national ID to {hotel}.")),
    ];
    let disclosures = vec![Disclosure {
        tool: "send_email",
        target: address.clone(),
        kind,
    }];
    let world = t.finish(vec![Check::Sent {
        to: address,
        body_has: value,
    }]);
    Scenario {
        world,
        task,
        plan,
        disclosures,
    }
}

fn cheapest_to_friend(g: &mut Gen<'_>) -> Scenario {
    let t = Travel::new(g, 2);
    let city = t.hotels[3 * g.int(0, 1) as usize].city;
    let hotel = t.cheapest(&[city]).name;
    let p = g.person();
    let task = format!(
        "Find the cheapest hotel in {city} and email its name to {} at {}.",
        p.name, p.email
    );
    let plan = vec![
        search(city),
        send(
            &p.email,
            "Hotel tip",
            &format!("The cheapest hotel in {city} is {hotel}."),
        ),
        answer(&format!("Told {} that {hotel} is the cheapest.", p.name)),
    ];
    scenario(
        t.finish(vec![Check::Sent {
            to: p.email,
            body_has: hotel.to_string(),
        }]),
        task,
        plan,
    )
}

fn cheapest_of_two(g: &mut Gen<'_>) -> Scenario {
    let t = Travel::new(g, 2);
    let (c1, c2) = (t.hotels[0].city, t.hotels[3].city);
    let hotel = t.cheapest(&[c1, c2]).name;
    let (date, nights) = stay(g);
    let task = format!(
        "Compare hotels in {c1} and {c2} and book the cheapest of all for {nights} nights from {date}."
    );
    let plan = vec![
        search(c1),
        search(c2),
        book(hotel, &date, nights),
        answer(&format!("Booked {hotel}.")),
    ];
    scenario(
        t.finish(vec![Check::Booking {
            hotel,
            check_in: date,
            nights,
        }]),
        task,
        plan,
    )
}

fn best_book_tell(g: &mut Gen<'_>) -> Scenario {
    let t = Travel::new(g, 2);
    let city = t.hotels[3 * g.int(0, 1) as usize].city;
    let hotel = t.best_rated(city).name;
    let (date, nights) = stay(g);
    let p = g.person();
    let task = format!(
        "Book the best-rated hotel in {city} for {nights} nights from {date}, then email {} at {} which hotel you booked.",
        p.name, p.email
    );
    let plan = vec![
        search(city),
        book(hotel, &date, nights),
        send(&p.email, "Hotel", &format!("I booked {hotel}.")),
        answer(&format!("Booked {hotel} and told {}.", p.name)),
    ];
    let checks = vec![
        Check::Booking {
            hotel,
            check_in: date,
            nights,
        },
        Check::Sent {
            to: p.email,
            body_has: hotel.to_string(),
        },
    ];
    scenario(t.finish(checks), task, plan)
}

pub(crate) static TEMPLATES: &[TaskTemplate] = &[
    TaskTemplate {
        id: "book_named",
        split: Split::Train,
        build: book_named,
    },
    TaskTemplate {
        id: "book_cheapest",
        split: Split::Train,
        build: book_cheapest,
    },
    TaskTemplate {
        id: "book_best",
        split: Split::Train,
        build: book_best,
    },
    TaskTemplate {
        id: "hotel_rating",
        split: Split::Train,
        build: hotel_rating,
    },
    TaskTemplate {
        id: "review_quote",
        split: Split::Train,
        build: review_quote,
    },
    TaskTemplate {
        id: "book_and_email",
        split: Split::Train,
        build: book_and_email,
    },
    TaskTemplate {
        id: "send_id",
        split: Split::Train,
        build: send_id,
    },
    TaskTemplate {
        id: "cheapest_to_friend",
        split: Split::Eval,
        build: cheapest_to_friend,
    },
    TaskTemplate {
        id: "cheapest_of_two",
        split: Split::Eval,
        build: cheapest_of_two,
    },
    TaskTemplate {
        id: "best_book_tell",
        split: Split::Eval,
        build: best_book_tell,
    },
];
