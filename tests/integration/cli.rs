//! The command line as a user meets it: config errors, enqueue input, migrate, demo, --help.

use helpdesk_sync::sim::{HELPDESK_ID, SimConfig};

use crate::helpers::*;

#[tokio::test]
async fn config_errors_name_the_key_exit_2_and_call_nothing() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        tickets: 1,
        ..SimConfig::default()
    })
    .await;
    let cases: [(&str, &str); 4] = [
        ("[feishu]\napp_secrt = \"x\"\n", "app_secrt"),
        (
            "[feishu]\nrequest_timeout = \"soon\"\n",
            "feishu.request_timeout",
        ),
        ("[sync]\nbatch_size = 0\n", "sync.batch_size"),
        ("[feishu\n", "TOML"),
    ];
    for (toml, expected) in cases {
        let ws = TestConfig::empty(&db).raw(toml).workspace();
        let out = ws.exec(&["sync"]).await;
        assert_eq!(out.code, Some(2), "{toml}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{toml}: {}", out.stderr);
    }
    // A complete file without the secret: named, exit 2, before any request.
    let c = sim.state.config();
    let ws = TestConfig::empty(&db)
        .feishu("base_url", sim.base_url())
        .feishu("app_id", c.app_id.as_str())
        .feishu("helpdesk_id", c.helpdesk_id.as_str())
        .feishu("helpdesk_token", "t")
        .workspace();
    let out = ws.exec(&["sync"]).await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("feishu.app_secret is missing"),
        "{}",
        out.stderr
    );
    assert!(sim.state.requests().is_empty(), "a request was made");

    let out = exec_binary(&["--config", "/nonexistent/config.toml", "migrate"], &[]).await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr
            .contains("/nonexistent/config.toml does not exist")
    );
}

#[tokio::test]
async fn enqueue_is_idempotent_and_rejects_bad_input_whole() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        tickets: 1,
        ..SimConfig::default()
    })
    .await;
    let ws = TestConfig::new(&sim, &db).workspace();
    let out = ws
        .run(
            &["enqueue", "6626871355780366331", "6626871355780366332"],
            &[],
            None,
        )
        .await;
    assert_ok(&out);
    assert!(stdout(&out).contains("2 new"), "{}", stdout(&out));
    let out = ws
        .run(
            &["enqueue", "--file", "-"],
            &[],
            Some("# from stdin\n6626871355780366331\n\n6626871355780366333\n"),
        )
        .await;
    assert_ok(&out);
    assert!(
        stdout(&out).contains("1 new, 1 already known"),
        "{}",
        stdout(&out)
    );
    assert_eq!(db.count("SELECT count(*) FROM ticket_sync_state").await, 3);

    let bad = ws.write_file(
        "bad.txt",
        "6626871355780366340\nnot-an-id\n6626871355780366341\n",
    );
    let out = ws
        .run(&["enqueue", "--file", bad.to_str().unwrap()], &[], None)
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing was enqueued"));
    assert_eq!(db.count("SELECT count(*) FROM ticket_sync_state").await, 3);

    let out = ws.run(&["enqueue"], &[], None).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn migrate_is_repeatable() {
    let db = TestDb::new().await;
    let ws = TestConfig::empty(&db).workspace();
    ws.exec(&["migrate"]).await.assert_ok();
    ws.exec(&["migrate"]).await.assert_ok();
    assert_eq!(
        db.count(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN
                  ('tickets','helpdesk_users','ticket_agents','ticket_collaborators','tags',
                   'ticket_tags','ticket_custom_fields','ticket_comments','ticket_sync_state')"
        )
        .await,
        9
    );
}

#[tokio::test]
async fn demo_fills_a_fresh_database() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let out = demo_in(dir.path(), &db).await;
    assert_ok(&out);
    let text = stdout(&out);
    // Two helpdesks of one app: Customer support's 25 tickets (one deleted upstream), IT's 12.
    assert!(
        text.contains("The database now holds 36 tickets (Customer support 24, IT 12)"),
        "{text}"
    );
    assert!(text.contains("1 deleted upstream"), "{text}");
    assert!(text.contains("psql"), "{text}");
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 36);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM tickets WHERE helpdesk_id = '{HELPDESK_ID}'"
        ))
        .await,
        24
    );
    // The reporting views name each helpdesk as the demo's config does.
    assert_eq!(
        db.count("SELECT count(*) FROM reporting.tickets WHERE helpdesk_name = 'IT'")
            .await,
        12
    );
    // Each helpdesk synced in its own recorded run.
    assert_eq!(
        db.count("SELECT count(DISTINCT helpdesk_id) FROM sync_runs WHERE trigger = 'demo' AND outcome = 'ok'")
            .await,
        2
    );
    // SLA: a calendar and two targets seeded; every ticket has a first-reply clock, reported.
    assert!(text.contains("SLA (ticket_sla"), "{text}");
    assert!(text.contains("first-reply: 36 tickets"), "{text}");
    assert_eq!(
        db.count("SELECT count(*) FROM business_calendars WHERE is_default")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sla WHERE target_id = 'first-reply'")
            .await,
        36
    );
    // The webhook part: three changed tickets in Customer support and one in IT, four events
    // through the one real endpoint, four re-fetches in an event-triggered cycle per helpdesk.
    assert!(
        text.contains("Webhook events: 4 tickets changed upstream (Customer support 3, IT 1)"),
        "{text}"
    );
    assert!(text.contains("4 tickets re-fetched"), "{text}");
    assert_eq!(
        db.count("SELECT count(*) FROM event_receipts WHERE outcome = 'queued'")
            .await,
        4
    );
    assert_eq!(
        db.count("SELECT count(*) FROM sync_runs WHERE trigger = 'event' AND outcome = 'ok'")
            .await,
        2
    );
}

/// Runs `demo` in `dir` (it leaves its config file in the current directory).
async fn demo_in(dir: &std::path::Path, db: &TestDb) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_helpdesk-sync"))
        .args(["demo", "--tickets", "25"])
        .env("DATABASE_URL", &db.url)
        .env_remove("HELPDESK_SYNC_CONFIG")
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run demo")
}

/// What a dashboard built on the demo reads: history and its derived counts.
async fn demo_tables(db: &TestDb) -> [i64; 6] {
    [
        db.count("SELECT count(*) FROM tickets").await,
        db.count("SELECT count(*) FROM ticket_versions").await,
        db.count("SELECT count(*) FROM ticket_status_history").await,
        db.count("SELECT coalesce(sum(reopen_count), 0)::bigint FROM reporting.tickets")
            .await,
        db.count("SELECT count(*) FROM reporting.sla").await,
        db.count("SELECT count(*) FROM sync_runs").await,
    ]
}

#[tokio::test]
async fn demo_twice_leaves_the_same_tables_and_a_config_that_status_reads() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let first = demo_in(dir.path(), &db).await;
    assert_ok(&first);
    let after_first = demo_tables(&db).await;
    assert_eq!(after_first[0], 36, "{}", stdout(&first));
    let second = demo_in(dir.path(), &db).await;
    assert_ok(&second);
    assert!(
        stdout(&second).contains("reset the demo database"),
        "the second run says it started anew: {}",
        stdout(&second)
    );
    assert_eq!(
        demo_tables(&db).await,
        after_first,
        "tickets, versions, transitions, reopens, SLA clocks, runs"
    );

    // The config it left: status reads the demo database through it.
    let config = dir.path().join("helpdesk-sync-demo.toml");
    let text = std::fs::read_to_string(&config).expect("the demo leaves its config");
    assert!(text.contains("[sla]") && text.contains(db.name()), "{text}");
    assert_eq!(text.matches("[[helpdesks]]").count(), 2, "{text}");
    // As a user would run it: the database is the one in the file (DATABASE_URL, set by CI,
    // would override it).
    let with_config = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_helpdesk-sync"));
        command
            .args(["--config", config.to_str().unwrap()])
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("HELPDESK_SYNC_CONFIG")
            .stdin(std::process::Stdio::null());
        command.output()
    };
    let status = with_config(&["status", "--json"]).await.unwrap();
    let json = stdout(&status);
    assert!(
        json.contains("\"queue\""),
        "status read the demo database: {json}{}",
        stderr(&status)
    );
    // migrate through it keeps the demo's SLA targets (they are in the file).
    assert_ok(&with_config(&["migrate"]).await.unwrap());
    assert_eq!(db.count("SELECT count(*) FROM sla_targets").await, 2);
}

#[tokio::test]
async fn demo_refuses_a_database_with_tickets_it_did_not_make() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(5)).await;
    let ws = Workspace::new(&sim, &db, "");
    assert_ok(&ws.run(&["sync"], &[], None).await);
    let dir = tempfile::tempdir().unwrap();
    let out = demo_in(dir.path(), &db).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds 5 tickets that no demo made"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM tickets").await,
        5,
        "untouched"
    );
}

#[tokio::test]
async fn help_offers_config_only_where_it_is_read() {
    for (command, reads) in [
        ("sync", true),
        ("status", true),
        ("migrate", true),
        ("demo", false),
        ("simulate", false),
    ] {
        let out = run_binary(&[command, "--help"], &[], None).await;
        assert_ok(&out);
        assert_eq!(stdout(&out).contains("--config"), reads, "{command} --help");
    }
    let refused = run_binary(&["--config", "x.toml", "demo"], &[], None).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("read no config file"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test]
async fn status_without_a_config_file_says_what_it_tried_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_helpdesk-sync"))
        .args(["--log-format", "pretty", "status"])
        .env_remove("HELPDESK_SYNC_CONFIG")
        .env_remove("DATABASE_URL")
        .env(
            "HELPDESK_SYNC__DATABASE__URL",
            "postgres://postgres@127.0.0.1:1/helpdesk",
        )
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert_eq!(text.trim().lines().count(), 1, "{text}");
    assert!(
        text.contains("no config file (./config.toml does not exist"),
        "{text}"
    );
    assert!(text.contains("127.0.0.1:1/helpdesk"), "{text}");
    assert!(text.contains("--config PATH or DATABASE_URL="), "{text}");
    assert!(!text.contains(" at line "), "{text}");
}

#[tokio::test]
async fn help_lists_every_command() {
    let out = exec_binary(&["--help"], &[]).await;
    let text = &out.assert_ok().stdout;
    for command in [
        "migrate",
        "enqueue",
        "sync",
        "simulate",
        "demo",
        "Exit codes",
    ] {
        assert!(text.contains(command), "--help lacks {command}");
    }
}
