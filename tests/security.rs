//! What a hostile party can do, each with its defined answer: an agent steered by an issue's
//! text, a webhook replayed under a new delivery id, a flood of commands, a service that cannot
//! tell who is commenting. The real service, database, Docker engine and git, against the GitHub
//! simulator.

mod common;

use common::TestDb;
use common::github_sim::git::git;
use common::story::story_with;

const JOINER: char = '\u{200D}';

both_backends!(
    what_the_agent_writes_cannot_mention_or_close,
    |db: TestDb| async move {
        // An issue's text steered the agent into ending with mentions and closing keywords.
        let steered =
            "Fixed it. Closes #2, fixes octo-org/widgets#3; cc @octo-org/owners and @mona";
        let s = story_with(
            db,
            &[],
            &[
                ("README.md", "# widgets\n"),
                (".amp-stub/json.sh", "printf -- '--json\\n' >> FLAGS\n"),
                (".amp-stub/summary.txt", steered),
            ],
        )
        .await;
        s.sim
            .comment(&s.repo, 21, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        let pulls = s.sim.pulls();
        assert_eq!(pulls.len(), 1);
        let body = &pulls[0].body;
        let status = s.status_saying(21, "`awaiting_ci`").await.body;
        let bare = s.sim.bare_repo(&s.repo);
        let commit = git(
            &bare,
            &["log", "-1", "--format=%B", task.branch.as_deref().unwrap()],
        );
        for (what, text) in [
            ("pull request", body),
            ("status comment", &status),
            ("commit", &commit),
        ] {
            // The words are all there, to read…
            assert!(text.replace(JOINER, "").contains(steered), "{what}: {text}");
            // …and none of them acts.
            for acting in [
                "Closes #2,",
                "fixes octo-org/widgets#3",
                "@octo-org/owners",
                "@mona",
            ] {
                assert!(
                    !text.contains(acting),
                    "{what} still has {acting:?}: {text}"
                );
            }
        }
        // The project's own closing keyword is the only one, for the task's issue.
        assert!(body.starts_with("Closes #21\n"), "{body}");
    }
);
