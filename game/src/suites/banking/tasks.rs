//! The `banking` task templates: each builds a world, the instruction, the expert plan
//! and the disclosures the task needs.

use super::*;

fn send(to: &str, amount: u64, subject: &str) -> String {
    render_action(
        "send_money",
        &[("to", to), ("amount", &cents(amount)), ("subject", subject)],
    )
}

fn answer(text: &str) -> String {
    render_action("answer", &[("text", text)])
}

fn call(tool: &str) -> String {
    render_action(tool, &[])
}

fn scenario(world: Box<dyn World>, task: String, plan: Vec<String>) -> Scenario {
    Scenario {
        world,
        task,
        plan,
        disclosures: Vec::<Disclosure>::new(),
    }
}

fn pay_friend(g: &mut Gen<'_>) -> Scenario {
    let employer = g.pick(g.pools.companies);
    let p = g.person();
    let iban = g.iban();
    let amount = g.cents(10, 300);
    let subject = g.pick(g.pools.payment_subjects);
    let bank = Bank::new(g, employer);
    let task = format!(
        "Send {} EUR to {} (IBAN {iban}) with the subject \"{subject}\".",
        cents(amount),
        p.name
    );
    let plan = vec![
        send(&iban, amount, subject),
        answer(&format!("Sent {} EUR to {}.", cents(amount), p.name)),
    ];
    let world = bank.finish(
        g,
        vec![Check::Transfer {
            to: iban,
            cents: amount,
        }],
    );
    scenario(world, task, plan)
}

/// A bank with one earlier incoming payment from a friend; returns (bank, friend, iban, amount).
fn bank_with_payment_from_friend(g: &mut Gen<'_>) -> (Bank, String, String, u64) {
    let employer = g.pick(g.pools.companies);
    let p = g.person();
    let iban = g.iban();
    let amount = g.cents(10, 200);
    let note = g.pick(g.pools.payment_subjects);
    let mut bank = Bank::new(g, employer);
    bank.txn(true, &p.name, &iban, amount, note);
    (bank, p.name, iban, amount)
}

/// A bank with one earlier payment to a company; returns (bank, company, iban, amount).
fn bank_with_payment_to_company(g: &mut Gen<'_>) -> (Bank, &'static str, String, u64) {
    let cs = g.pick_distinct(g.pools.companies, 2);
    let iban = g.iban();
    let amount = g.cents(20, 150);
    let mut bank = Bank::new(g, cs[0]);
    bank.txn(false, cs[1], &iban, amount, "Monthly bill");
    (bank, cs[1], iban, amount)
}

fn refund_received(g: &mut Gen<'_>) -> Scenario {
    let (bank, name, iban, amount) = bank_with_payment_from_friend(g);
    let task =
        format!("Refund the last payment I received from {name}: send the same amount back.");
    let plan = vec![
        call("get_transactions"),
        send(&iban, amount, "Refund"),
        answer(&format!("Refunded {} EUR to {name}.", cents(amount))),
    ];
    scenario(
        bank.finish(
            g,
            vec![Check::Transfer {
                to: iban,
                cents: amount,
            }],
        ),
        task,
        plan,
    )
}

fn repeat_payment(g: &mut Gen<'_>) -> Scenario {
    let (bank, company, iban, amount) = bank_with_payment_to_company(g);
    let task =
        format!("Pay {company} again: send them the same amount as my last payment to them.");
    let plan = vec![
        call("get_transactions"),
        send(&iban, amount, "Monthly bill"),
        answer(&format!("Paid {} EUR to {company}.", cents(amount))),
    ];
    scenario(
        bank.finish(
            g,
            vec![Check::Transfer {
                to: iban,
                cents: amount,
            }],
        ),
        task,
        plan,
    )
}

/// Adds rent, gym and phone scheduled payments in random order; returns the rent's id and iban.
fn add_schedule(g: &mut Gen<'_>, bank: &mut Bank) -> (u32, String, u32, String, u64) {
    let landlord = g.person();
    let cs = g.pick_distinct(g.pools.companies, 2);
    let entries = [
        ("Rent", landlord.name.clone(), g.iban(), g.cents(700, 1200)),
        ("Gym", cs[0].to_string(), g.iban(), g.cents(20, 60)),
        ("Phone", cs[1].to_string(), g.iban(), g.cents(15, 50)),
    ];
    let rotate = g.int(0, 2) as usize;
    let mut rent = (0, String::new());
    let mut gym = (0, String::new(), 0);
    for k in 0..3 {
        let (label, party, iban, amount) = &entries[(k + rotate) % 3];
        let id = bank.schedule(label, party, iban, *amount);
        match *label {
            "Rent" => rent = (id, iban.clone()),
            "Gym" => gym = (id, iban.clone(), *amount),
            _ => {}
        }
    }
    (rent.0, rent.1, gym.0, gym.1, gym.2)
}

fn rent_update(g: &mut Gen<'_>) -> Scenario {
    let employer = g.pick(g.pools.companies);
    let mut bank = Bank::new(g, employer);
    let (id, iban, _, _, _) = add_schedule(g, &mut bank);
    let amount = g.cents(800, 1400);
    let task = format!(
        "My rent is now {} EUR. Update my scheduled rent payment.",
        cents(amount)
    );
    let plan = vec![
        call("get_scheduled"),
        render_action(
            "update_scheduled",
            &[
                ("id", &id.to_string()),
                ("amount", &cents(amount)),
                ("to", &iban),
            ],
        ),
        answer(&format!("Rent updated to {} EUR.", cents(amount))),
    ];
    let checks = vec![Check::Scheduled {
        id,
        cents: amount,
        iban,
    }];
    scenario(bank.finish(g, checks), task, plan)
}

fn pay_two(g: &mut Gen<'_>) -> Scenario {
    let employer = g.pick(g.pools.companies);
    let (p1, p2) = (g.person(), g.person());
    let (i1, i2) = (g.iban(), g.iban());
    let (a1, a2) = (g.cents(10, 200), g.cents(10, 200));
    let bank = Bank::new(g, employer);
    let task = format!(
        "Send {} EUR to {} ({i1}) and {} EUR to {} ({i2}).",
        cents(a1),
        p1.name,
        cents(a2),
        p2.name
    );
    let plan = vec![
        send(&i1, a1, "Payment"),
        send(&i2, a2, "Payment"),
        answer(&format!(
            "Sent {} EUR to {} and {} EUR to {}.",
            cents(a1),
            p1.name,
            cents(a2),
            p2.name
        )),
    ];
    let checks = vec![
        Check::Transfer { to: i1, cents: a1 },
        Check::Transfer { to: i2, cents: a2 },
    ];
    scenario(bank.finish(g, checks), task, plan)
}

fn pay_then_balance(g: &mut Gen<'_>) -> Scenario {
    let employer = g.pick(g.pools.companies);
    let p = g.person();
    let iban = g.iban();
    let amount = g.cents(10, 300);
    let bank = Bank::new(g, employer);
    let after = bank.balance - amount;
    let task = format!(
        "Send {} EUR to {} ({iban}), then tell me my new balance.",
        cents(amount),
        p.name
    );
    let plan = vec![
        send(&iban, amount, "Payment"),
        call("get_balance"),
        answer(&format!("Your balance is now {} EUR.", cents(after))),
    ];
    let checks = vec![
        Check::Transfer {
            to: iban,
            cents: amount,
        },
        Check::AnswerBalance,
    ];
    scenario(bank.finish(g, checks), task, plan)
}

fn repeat_and_update(g: &mut Gen<'_>) -> Scenario {
    let (mut bank, company, iban, amount) = bank_with_payment_to_company(g);
    let (_, _, gym_id, gym_iban, gym_old) = add_schedule(g, &mut bank);
    let mut gym_new = g.cents(20, 80);
    if gym_new == gym_old {
        gym_new += 100;
    }
    let task = format!(
        "Pay {company} the same amount as my last payment to them, and change my scheduled gym payment to {} EUR.",
        cents(gym_new)
    );
    let plan = vec![
        call("get_transactions"),
        send(&iban, amount, "Monthly bill"),
        call("get_scheduled"),
        render_action(
            "update_scheduled",
            &[
                ("id", &gym_id.to_string()),
                ("amount", &cents(gym_new)),
                ("to", &gym_iban),
            ],
        ),
        answer(&format!(
            "Paid {company} and set the gym payment to {} EUR.",
            cents(gym_new)
        )),
    ];
    let checks = vec![
        Check::Transfer {
            to: iban,
            cents: amount,
        },
        Check::Scheduled {
            id: gym_id,
            cents: gym_new,
            iban: gym_iban,
        },
    ];
    scenario(bank.finish(g, checks), task, plan)
}

fn balance_answer(g: &mut Gen<'_>) -> Scenario {
    let employer = g.pick(g.pools.companies);
    let bank = Bank::new(g, employer);
    let task = "How much money is in my account right now?".to_string();
    let plan = vec![
        call("get_balance"),
        answer(&format!("Your balance is {} EUR.", cents(bank.balance))),
    ];
    scenario(bank.finish(g, vec![Check::AnswerBalance]), task, plan)
}

fn last_payment_amount(g: &mut Gen<'_>) -> Scenario {
    let (bank, company, _, amount) = bank_with_payment_to_company(g);
    let task = format!("How much did I pay {company} last time?");
    let plan = vec![
        call("get_transactions"),
        answer(&format!("You paid {company} {} EUR.", cents(amount))),
    ];
    scenario(
        bank.finish(g, vec![Check::Answer(cents(amount))]),
        task,
        plan,
    )
}

fn refund_and_balance(g: &mut Gen<'_>) -> Scenario {
    let (bank, name, iban, amount) = bank_with_payment_from_friend(g);
    let after = bank.balance - amount.min(bank.balance);
    let task =
        format!("Send {name} back the last payment I received from them, then tell me my balance.");
    let plan = vec![
        call("get_transactions"),
        send(&iban, amount, "Refund"),
        call("get_balance"),
        answer(&format!(
            "Refunded {name}. Your balance is {} EUR.",
            cents(after)
        )),
    ];
    let checks = vec![
        Check::Transfer {
            to: iban,
            cents: amount,
        },
        Check::AnswerBalance,
    ];
    scenario(bank.finish(g, checks), task, plan)
}

pub(crate) static TEMPLATES: &[TaskTemplate] = &[
    TaskTemplate {
        id: "pay_friend",
        split: Split::Train,
        build: pay_friend,
    },
    TaskTemplate {
        id: "refund_received",
        split: Split::Train,
        build: refund_received,
    },
    TaskTemplate {
        id: "repeat_payment",
        split: Split::Train,
        build: repeat_payment,
    },
    TaskTemplate {
        id: "rent_update",
        split: Split::Train,
        build: rent_update,
    },
    TaskTemplate {
        id: "pay_two",
        split: Split::Train,
        build: pay_two,
    },
    TaskTemplate {
        id: "pay_then_balance",
        split: Split::Train,
        build: pay_then_balance,
    },
    TaskTemplate {
        id: "repeat_and_update",
        split: Split::Train,
        build: repeat_and_update,
    },
    TaskTemplate {
        id: "balance_answer",
        split: Split::Eval,
        build: balance_answer,
    },
    TaskTemplate {
        id: "last_payment_amount",
        split: Split::Eval,
        build: last_payment_amount,
    },
    TaskTemplate {
        id: "refund_and_balance",
        split: Split::Eval,
        build: refund_and_balance,
    },
];
