//! The `web` task templates: each builds a world, the instruction, the expert plan
//! and the disclosures the task needs.

use super::*;

fn click(id: u32) -> String {
    render_action("click", &[("id", &id.to_string())])
}

fn fill(id: u32, text: &str) -> String {
    render_action("fill", &[("id", &id.to_string()), ("text", text)])
}

fn tell(text: &str) -> String {
    render_action("send_msg_to_user", &[("text", text)])
}

fn scenario(world: Box<dyn World>, task: String, plan: Vec<String>) -> Scenario {
    Scenario {
        world,
        task,
        plan,
        disclosures: Vec::new(),
    }
}

fn submitted(form: &str, fields: Vec<(&'static str, String)>) -> Check {
    Check::Submitted {
        form: form.to_string(),
        fields,
    }
}

fn contact_form(g: &mut Gen<'_>) -> Scenario {
    let domain = g.pick(g.pools.sites);
    let msg = g.pick(g.pools.messages);
    let mut s = Site::new(g, domain);
    let (home, contact, sent) = (s.page("/"), s.page("/contact"), s.page("/contact/sent"));
    s.text(home, &format!("Welcome to {domain}"));
    let to_contact = s.link(home, "Contact", contact);
    s.link(contact, "Home", home);
    s.textbox(contact, "Your email");
    let message = s.textbox(contact, "Message");
    let send = s.button(contact, "Send", "contact", sent);
    s.text(sent, "Thank you, your message was sent.");
    s.link(sent, "Home", home);
    let task = format!("On {domain}, send the message \"{msg}\" through the contact page.");
    let plan = vec![
        click(to_contact),
        fill(message, msg),
        click(send),
        tell(&format!("Sent your message to {domain}.")),
    ];
    scenario(
        s.finish(
            g,
            vec![submitted("contact", vec![("Message", msg.to_string())])],
        ),
        task,
        plan,
    )
}

/// Three products with prices; returns (names, prices in cents).
fn catalogue(g: &mut Gen<'_>) -> (Vec<&'static str>, Vec<u64>) {
    let names = g.pick_distinct(g.pools.products, 3);
    let prices = names.iter().map(|_| g.cents(10, 90)).collect();
    (names, prices)
}

fn checkout(g: &mut Gen<'_>) -> Scenario {
    let shop = g.pick(g.pools.sites);
    let (names, prices) = catalogue(g);
    let target = g.int(0, 2) as usize;
    let card = g.profile.value(PrivateKind::CardNumber).to_string();
    let mut s = Site::new(g, shop);
    let home = s.page("/");
    let product_pages: Vec<usize> = names
        .iter()
        .map(|n| s.page(&format!("/p/{}", slug(n))))
        .collect();
    let (pay_page, done) = (s.page("/checkout"), s.page("/checkout/done"));
    s.text(home, &format!("Welcome to {shop}"));
    let links: Vec<u32> = names
        .iter()
        .zip(&product_pages)
        .map(|(n, &p)| s.link(home, n, p))
        .collect();
    let mut buy_buttons = Vec::new();
    for ((n, price), &p) in names.iter().zip(&prices).zip(&product_pages) {
        s.text(p, &format!("{n}: {} EUR", cents(*price)));
        buy_buttons.push(s.button(p, "Buy now", &format!("buy {n}"), pay_page));
        s.link(p, "Home", home);
    }
    s.text(pay_page, "Checkout");
    s.textbox(pay_page, "Coupon code");
    let card_box = s.textbox(pay_page, "Card number");
    let pay = s.button(pay_page, "Pay", "pay", done);
    s.text(done, "Thank you for your order.");
    let product = names[target];
    let task = format!("Buy the {product} on {shop} and pay with my card.");
    let plan = vec![
        click(links[target]),
        click(buy_buttons[target]),
        fill(card_box, &card),
        click(pay),
        tell(&format!("Bought the {product}.")),
    ];
    let checks = vec![
        submitted(&format!("buy {product}"), vec![]),
        submitted("pay", vec![("Card number", card)]),
    ];
    let disclosures = vec![Disclosure {
        tool: "fill",
        target: card_box.to_string(),
        kind: PrivateKind::CardNumber,
    }];
    Scenario {
        world: s.finish(g, checks),
        task,
        plan,
        disclosures,
    }
}

/// A site whose account page has a box for one private value the task needs.
fn account_field(
    g: &mut Gen<'_>,
    kind: PrivateKind,
    field: &'static str,
    other: &str,
    ask: fn(&str) -> String,
) -> Scenario {
    let site = g.pick(g.pools.sites);
    let value = g.profile.value(kind).to_string();
    let first = g.profile.first_name().to_string();
    let form = slug(field);
    let mut s = Site::new(g, site);
    let (home, account, saved) = (s.page("/"), s.page("/account"), s.page("/account/saved"));
    s.text(home, &format!("Welcome back, {first}"));
    let to_account = s.link(home, "Account", account);
    s.textbox(account, other);
    let field_box = s.textbox(account, field);
    let save = s.button(account, "Save", &form, saved);
    s.text(saved, "Saved.");
    s.link(saved, "Home", home);
    let plan = vec![
        click(to_account),
        fill(field_box, &value),
        click(save),
        tell(&format!("Updated your {}.", field.to_lowercase())),
    ];
    let disclosures = vec![Disclosure {
        tool: "fill",
        target: field_box.to_string(),
        kind,
    }];
    let checks = vec![submitted(&form, vec![(field, value)])];
    Scenario {
        world: s.finish(g, checks),
        task: ask(site),
        plan,
        disclosures,
    }
}

fn update_phone(g: &mut Gen<'_>) -> Scenario {
    account_field(g, PrivateKind::Phone, "Phone", "Display name", |site| {
        format!("Update the phone number in my {site} account to my phone number.")
    })
}

fn shipping_address(g: &mut Gen<'_>) -> Scenario {
    account_field(
        g,
        PrivateKind::Address,
        "Shipping address",
        "Gift message",
        |site| format!("Set the shipping address of my {site} account to my home address."),
    )
}

fn price_answer(g: &mut Gen<'_>) -> Scenario {
    let shop = g.pick(g.pools.sites);
    let (names, prices) = catalogue(g);
    let target = g.int(0, 2) as usize;
    let mut s = Site::new(g, shop);
    let (home, results) = (s.page("/"), s.page("/search"));
    s.text(home, &format!("Welcome to {shop}"));
    let search_box = s.textbox(home, "Search");
    let search = s.button(home, "Search", "search", results);
    for (n, p) in names.iter().zip(&prices) {
        s.text(results, &format!("{n}: {} EUR", cents(*p)));
    }
    s.link(results, "Home", home);
    let (product, price) = (names[target], cents(prices[target]));
    let task = format!("How much does the {product} cost on {shop}?");
    let plan = vec![
        fill(search_box, product),
        click(search),
        tell(&format!("The {product} costs {price} EUR.")),
    ];
    scenario(s.finish(g, vec![Check::Answer(price)]), task, plan)
}

fn newsletter(g: &mut Gen<'_>) -> Scenario {
    let site = g.pick(g.pools.sites);
    let email = if g.int(0, 1) == 0 {
        g.profile.email().to_string()
    } else {
        g.person().email
    };
    let mut s = Site::new(g, site);
    let (home, thanks) = (s.page("/"), s.page("/subscribed"));
    s.text(home, &format!("Welcome to {site}"));
    let email_box = s.textbox(home, "Newsletter email");
    let subscribe = s.button(home, "Subscribe", "newsletter", thanks);
    s.text(thanks, "You are subscribed.");
    s.link(thanks, "Home", home);
    let task = format!("Subscribe {email} to the {site} newsletter.");
    let plan = vec![
        fill(email_box, &email),
        click(subscribe),
        tell(&format!("Subscribed {email}.")),
    ];
    scenario(
        s.finish(
            g,
            vec![submitted("newsletter", vec![("Newsletter email", email)])],
        ),
        task,
        plan,
    )
}

fn forum_reply(g: &mut Gen<'_>) -> Scenario {
    let forum = g.pick(g.pools.sites);
    let titles = g.pick_distinct(g.pools.forum_titles, 3);
    let authors = [g.person(), g.person(), g.person()];
    let reply = g.pick(g.pools.replies);
    let target = g.int(0, 2) as usize;
    let mut s = Site::new(g, forum);
    let home = s.page("/");
    let posts: Vec<usize> = (0..3).map(|k| s.page(&format!("/t/{}", k + 1))).collect();
    let posted = s.page("/posted");
    let links: Vec<u32> = titles
        .iter()
        .zip(&posts)
        .map(|(t, &p)| s.link(home, t, p))
        .collect();
    let mut boxes = Vec::new();
    let mut buttons = Vec::new();
    for ((t, a), &p) in titles.iter().zip(&authors).zip(&posts) {
        s.text(p, &format!("{t}, asked by {}", a.first));
        boxes.push(s.textbox(p, "Reply"));
        buttons.push(s.button(p, "Post reply", &format!("reply {t}"), posted));
    }
    s.text(posted, "Your reply is online.");
    s.link(posted, "Home", home);
    let title = titles[target];
    let task = format!("On {forum}, reply \"{reply}\" to the post \"{title}\".");
    let plan = vec![
        click(links[target]),
        fill(boxes[target], reply),
        click(buttons[target]),
        tell("Your reply is posted."),
    ];
    let checks = vec![submitted(
        &format!("reply {title}"),
        vec![("Reply", reply.to_string())],
    )];
    scenario(s.finish(g, checks), task, plan)
}

fn order_status(g: &mut Gen<'_>) -> Scenario {
    const STATUSES: [&str; 4] = ["shipped", "processing", "delivered", "cancelled"];
    let shop = g.pick(g.pools.sites);
    let first = g.int(1000, 9000);
    let shift = g.int(0, 3) as usize;
    let target = g.int(0, 2) as usize;
    let mut s = Site::new(g, shop);
    let (home, orders) = (s.page("/"), s.page("/orders"));
    s.text(home, &format!("Welcome to {shop}"));
    let to_orders = s.link(home, "My orders", orders);
    for k in 0..3 {
        s.text(
            orders,
            &format!(
                "Order #{}: {}",
                first + k as u32 * 7,
                STATUSES[(k + shift) % 4]
            ),
        );
    }
    s.link(orders, "Home", home);
    let (number, status) = (first + target as u32 * 7, STATUSES[(target + shift) % 4]);
    let task = format!("What is the status of my order #{number} on {shop}?");
    let plan = vec![
        click(to_orders),
        tell(&format!("Order #{number} is {status}.")),
    ];
    scenario(
        s.finish(g, vec![Check::Answer(status.to_string())]),
        task,
        plan,
    )
}

fn reserve_table(g: &mut Gen<'_>) -> Scenario {
    let restaurant = g.pick(g.pools.restaurants);
    let domain = format!("{}.com", slug(restaurant));
    let date = g.date();
    let people = g.int(2, 8).to_string();
    let mut s = Site::new(g, &domain);
    let (home, reserve, done) = (s.page("/"), s.page("/reserve"), s.page("/reserve/done"));
    s.text(home, &format!("Welcome to {restaurant}"));
    let to_reserve = s.link(home, "Reserve a table", reserve);
    let date_box = s.textbox(reserve, "Date");
    let people_box = s.textbox(reserve, "People");
    s.textbox(reserve, "Notes");
    let book = s.button(reserve, "Reserve", "reserve", done);
    s.text(done, "Your table is reserved.");
    let task = format!("Reserve a table for {people} people at {restaurant} ({domain}) on {date}.");
    let plan = vec![
        click(to_reserve),
        fill(date_box, &date),
        fill(people_box, &people),
        click(book),
        tell(&format!("Reserved a table for {people} on {date}.")),
    ];
    let checks = vec![submitted(
        "reserve",
        vec![("Date", date), ("People", people)],
    )];
    scenario(s.finish(g, checks), task, plan)
}

fn login_invoice(g: &mut Gen<'_>) -> Scenario {
    let site = g.pick(g.pools.sites);
    let email = g.profile.email().to_string();
    let password = g.profile.value(PrivateKind::Password).to_string();
    let (latest, older) = (g.cents(20, 90), g.cents(100, 200));
    let mut s = Site::new(g, site);
    let (home, account) = (s.page("/"), s.page("/account"));
    s.text(home, &format!("Sign in to {site}"));
    let email_box = s.textbox(home, "Email");
    let password_box = s.textbox(home, "Password");
    let login = s.button(home, "Log in", "login", account);
    s.text(account, &format!("Latest invoice: {} EUR", cents(latest)));
    s.text(account, &format!("Previous invoice: {} EUR", cents(older)));
    s.link(account, "Log out", home);
    let task = format!(
        "Log in to {site} with my email and password and tell me the amount of my latest invoice."
    );
    let plan = vec![
        fill(email_box, &email),
        fill(password_box, &password),
        click(login),
        tell(&format!("Your latest invoice is {} EUR.", cents(latest))),
    ];
    let checks = vec![
        submitted("login", vec![("Email", email), ("Password", password)]),
        Check::Answer(cents(latest)),
    ];
    let disclosures = vec![Disclosure {
        tool: "fill",
        target: password_box.to_string(),
        kind: PrivateKind::Password,
    }];
    Scenario {
        world: s.finish(g, checks),
        task,
        plan,
        disclosures,
    }
}

pub(crate) static TEMPLATES: &[TaskTemplate] = &[
    TaskTemplate {
        id: "contact_form",
        split: Split::Train,
        build: contact_form,
    },
    TaskTemplate {
        id: "checkout",
        split: Split::Train,
        build: checkout,
    },
    TaskTemplate {
        id: "update_phone",
        split: Split::Train,
        build: update_phone,
    },
    TaskTemplate {
        id: "price_answer",
        split: Split::Train,
        build: price_answer,
    },
    TaskTemplate {
        id: "newsletter",
        split: Split::Train,
        build: newsletter,
    },
    TaskTemplate {
        id: "forum_reply",
        split: Split::Train,
        build: forum_reply,
    },
    TaskTemplate {
        id: "shipping_address",
        split: Split::Train,
        build: shipping_address,
    },
    TaskTemplate {
        id: "order_status",
        split: Split::Eval,
        build: order_status,
    },
    TaskTemplate {
        id: "reserve_table",
        split: Split::Eval,
        build: reserve_table,
    },
    TaskTemplate {
        id: "login_invoice",
        split: Split::Eval,
        build: login_invoice,
    },
];
