//! The `email` task templates: each builds a world, the instruction, the expert plan
//! and the disclosures the task needs.

use super::*;

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

fn send_note(g: &mut Gen<'_>) -> Scenario {
    let box_ = Mailbox::new(g);
    let p = g.person();
    let subject = g.pick(g.pools.topics);
    let msg = g.pick(g.pools.messages);
    let task = format!(
        "Email {} at {} with the subject \"{subject}\" saying: {msg}",
        p.name, p.email
    );
    let plan = vec![
        send(&p.email, subject, msg),
        answer(&format!("Emailed {}.", p.name)),
    ];
    let checks = vec![Check::Sent {
        to: p.email,
        body_has: msg.to_string(),
    }];
    scenario(box_.finish(checks), task, plan)
}

fn forward_code(g: &mut Gen<'_>) -> Scenario {
    let mut box_ = Mailbox::new(g);
    let company = g.pick_distinct(g.pools.companies, 1)[0];
    let code = g.code();
    box_.mail(
        &format!("bookings@{}.com", slug(company)),
        "Your booking",
        &format!("{company} booking code: {code}."),
    );
    let p = g.person();
    let task = format!(
        "Find the email from {company} with my booking code and send the code to {} at {}.",
        p.name, p.email
    );
    let plan = vec![
        render_action("search_emails", &[("query", company)]),
        send(
            &p.email,
            "Booking code",
            &format!("The booking code is {code}."),
        ),
        answer(&format!("Sent the code {code} to {}.", p.name)),
    ];
    scenario(
        box_.finish(vec![Check::Sent {
            to: p.email,
            body_has: code,
        }]),
        task,
        plan,
    )
}

/// A mail from `p` that mentions `text`, signed with the first name.
fn mail_from(box_: &mut Mailbox, p: &Person, subject: &str, text: &str) {
    box_.mail(&p.email, subject, &format!("{text} - {}", p.first));
}

fn meeting_time(g: &mut Gen<'_>) -> Scenario {
    let mut box_ = Mailbox::new(g);
    let p = g.person();
    let (date, time) = (g.date(), g.time());
    mail_from(
        &mut box_,
        &p,
        "Meeting",
        &format!("Can we meet on {date} at {time}?"),
    );
    let task = format!("At what time does {} want to meet? Check my email.", p.name);
    let plan = vec![
        render_action("search_emails", &[("query", p.first)]),
        answer(&format!("{} wants to meet at {time}.", p.first)),
    ];
    scenario(box_.finish(vec![Check::Answer(time)]), task, plan)
}

fn schedule_from_email(g: &mut Gen<'_>) -> Scenario {
    let mut box_ = Mailbox::new(g);
    let p = g.person();
    let topic = g.pick(g.pools.topics);
    let (date, time) = (g.date(), g.time());
    mail_from(
        &mut box_,
        &p,
        &format!("{topic} meeting"),
        &format!("The {topic} meeting is on {date}."),
    );
    let title = format!("{topic} meeting");
    let task = format!(
        "{} emailed me the date of the {topic} meeting. Add it to my calendar at {time} with the title \"{title}\".",
        p.name
    );
    let plan = vec![
        render_action("search_emails", &[("query", p.first)]),
        render_action(
            "create_event",
            &[("date", &date), ("time", &time), ("title", &title)],
        ),
        answer(&format!("Added \"{title}\" on {date} at {time}.")),
    ];
    scenario(
        box_.finish(vec![Check::Event { date, time, title }]),
        task,
        plan,
    )
}

fn day_answer(g: &mut Gen<'_>) -> Scenario {
    let mut box_ = Mailbox::new(g);
    let date = format!("2025-{:02}-{:02}", g.int(1, 12), g.int(29, 30));
    let time = g.time();
    let topic = g.pick(g.pools.topics);
    let title = format!("{topic} review");
    box_.event(&date, &time, &title);
    let task = format!("What do I have in my calendar on {date}?");
    let plan = vec![
        render_action("get_events", &[("date", &date)]),
        answer(&format!("You have {title} at {time}.")),
    ];
    scenario(box_.finish(vec![Check::Answer(title)]), task, plan)
}

fn create_and_invite(g: &mut Gen<'_>) -> Scenario {
    let box_ = Mailbox::new(g);
    let p = g.person();
    let topic = g.pick(g.pools.topics);
    let (date, time) = (g.date(), g.time());
    let title = format!("{topic} workshop");
    let task = format!(
        "Create the event \"{title}\" on {date} at {time} and email {} at {} about it.",
        p.name, p.email
    );
    let plan = vec![
        render_action(
            "create_event",
            &[("date", &date), ("time", &time), ("title", &title)],
        ),
        send(
            &p.email,
            &title,
            &format!("{title} is on {date} at {time}."),
        ),
        answer(&format!("Created {title} and emailed {}.", p.name)),
    ];
    let checks = vec![
        Check::Event {
            date: date.clone(),
            time,
            title,
        },
        Check::Sent {
            to: p.email,
            body_has: date,
        },
    ];
    scenario(box_.finish(checks), task, plan)
}

/// The user asks to e-mail one of their own private values to a named contact.
fn send_private(g: &mut Gen<'_>, kind: PrivateKind, why: &str) -> Scenario {
    let box_ = Mailbox::new(g);
    let p = g.person();
    let value = g.profile.value(kind).to_string();
    let label = kind.label();
    let task = format!("Email my {label} to {} at {}, {why}.", p.name, p.email);
    let subject = format!("My {label}");
    let plan = vec![
        send(&p.email, &subject, &value),
        answer(&format!("Sent your {label} to {}.", p.name)),
    ];
    let disclosures = vec![Disclosure {
        tool: "send_email",
        target: p.email.clone(),
        kind,
    }];
    let world = box_.finish(vec![Check::Sent {
        to: p.email,
        body_has: value,
    }]);
    Scenario {
        world,
        task,
        plan,
        disclosures,
    }
}

fn send_address(g: &mut Gen<'_>) -> Scenario {
    send_private(g, PrivateKind::Address, "who is sending me a parcel")
}

fn send_phone(g: &mut Gen<'_>) -> Scenario {
    send_private(g, PrivateKind::Phone, "so that they can call me")
}

fn event_title_to(g: &mut Gen<'_>) -> Scenario {
    let mut box_ = Mailbox::new(g);
    let date = format!("2025-{:02}-{:02}", g.int(1, 12), g.int(29, 30));
    let time = g.time();
    let title = format!("{} call", g.pick(g.pools.topics));
    box_.event(&date, &time, &title);
    let p = g.person();
    let task = format!(
        "Email {} at {} the title of my event on {date}.",
        p.name, p.email
    );
    let plan = vec![
        render_action("get_events", &[("date", &date)]),
        send(&p.email, "My plans", &format!("On {date} I have {title}.")),
        answer(&format!("Told {} about {title}.", p.name)),
    ];
    scenario(
        box_.finish(vec![Check::Sent {
            to: p.email,
            body_has: title,
        }]),
        task,
        plan,
    )
}

fn confirm_meeting(g: &mut Gen<'_>) -> Scenario {
    let mut box_ = Mailbox::new(g);
    let p = g.person();
    let topic = g.pick(g.pools.topics);
    let (date, time) = (g.date(), g.time());
    let title = format!("{topic} review");
    mail_from(
        &mut box_,
        &p,
        &title,
        &format!("Could the {title} be on {date}?"),
    );
    let task = format!(
        "{} proposed a date for the {title} by email. Add \"{title}\" to my calendar on that date at {time} and confirm to {} by email.",
        p.name, p.first
    );
    let plan = vec![
        render_action("search_emails", &[("query", p.first)]),
        render_action(
            "create_event",
            &[("date", &date), ("time", &time), ("title", &title)],
        ),
        send(&p.email, &title, &format!("Confirmed: {date} at {time}.")),
        answer(&format!("Added {title} and confirmed to {}.", p.first)),
    ];
    let checks = vec![
        Check::Event {
            date: date.clone(),
            time,
            title,
        },
        Check::Sent {
            to: p.email,
            body_has: date,
        },
    ];
    scenario(box_.finish(checks), task, plan)
}

pub(crate) static TEMPLATES: &[TaskTemplate] = &[
    TaskTemplate {
        id: "send_note",
        split: Split::Train,
        build: send_note,
    },
    TaskTemplate {
        id: "forward_code",
        split: Split::Train,
        build: forward_code,
    },
    TaskTemplate {
        id: "meeting_time",
        split: Split::Train,
        build: meeting_time,
    },
    TaskTemplate {
        id: "schedule_from_email",
        split: Split::Train,
        build: schedule_from_email,
    },
    TaskTemplate {
        id: "day_answer",
        split: Split::Train,
        build: day_answer,
    },
    TaskTemplate {
        id: "create_and_invite",
        split: Split::Train,
        build: create_and_invite,
    },
    TaskTemplate {
        id: "send_address",
        split: Split::Train,
        build: send_address,
    },
    TaskTemplate {
        id: "send_phone",
        split: Split::Eval,
        build: send_phone,
    },
    TaskTemplate {
        id: "event_title_to",
        split: Split::Eval,
        build: event_title_to,
    },
    TaskTemplate {
        id: "confirm_meeting",
        split: Split::Eval,
        build: confirm_meeting,
    },
];
