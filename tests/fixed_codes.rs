//! Fixing a refused row is enough: the results file keeps a short fingerprint of the code
//! each SIM was sent with (never the code), and a plain rerun sends a refused SIM again once
//! the code on its line is another one.

mod common;

use common::{TestEnv, exit_code, good_sim, stderr, wrong_code};

#[tokio::test]
async fn a_fixed_code_is_sent_again_by_a_plain_rerun_and_an_unfixed_one_is_not() {
    let env = TestEnv::new().await;
    let (a, code_a) = good_sim(1);
    let (b, code_b) = good_sim(2);
    let (c, code_c) = good_sim(3);
    env.write_input(&[
        (a.clone(), code_a.clone()),
        (b.clone(), wrong_code(&code_b)),
        (c.clone(), wrong_code(&code_c)),
    ]);
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 1, "{}", stderr(&output));
    let rows = env.last_rows();
    assert_eq!(rows[&b]["outcome"], "rejected");
    let fingerprint = rows[&b]["code_fingerprint"].clone();
    assert_eq!(fingerprint.len(), 6, "{:?}", rows[&b]);
    for row in rows.values() {
        assert!(
            !row.values()
                .any(|v| v == &wrong_code(&code_b) || v == &code_b)
        );
    }

    // The code of b is fixed; c's is left as it was.
    env.write_input(&[
        (a.clone(), code_a),
        (b.clone(), code_b),
        (c.clone(), wrong_code(&code_c)),
    ]);
    let creates = env.emulator.stats().create_requests;
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(
        env.emulator.stats().create_requests - creates,
        1,
        "only the fixed SIM is sent"
    );
    let rows = env.last_rows();
    assert_eq!(rows[&b]["outcome"], "registered");
    assert_eq!(rows[&b]["sid"], env.emulator.sim(&b).unwrap().sid);
    assert_eq!(rows[&c]["outcome"], "rejected");
    assert!(
        stderr(&output).contains("the registration code changed since the API refused it"),
        "{}",
        stderr(&output)
    );
    // And nothing more to do.
    let creates = env.emulator.stats().create_requests;
    let output = env.register(&[]).await;
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    assert_eq!(env.emulator.stats().create_requests, creates);
}
