//! RM-guided rejection sampling, one round of the report's SFT-data evolution: K responses per
//! question from the current model (CoT, or TIR with its tool), the accepted ones (checked
//! correct against the gold answer, or agreeing with the RM-weighted majority vote when there is
//! none), and the top m of those by reward-model score.

use anyhow::Result;
use mathrl::data::QaRecord;
use mathrl::generation::SamplingParams;
use mathrl::tokenizer::ChatMessage;
use mathrl::{Policy, Tokenizer};
use mathrl_learners::sft_data::Conversation;
use mathrl_rewards::{RewardModel, Verifier};

use crate::eval::prompts::PromptFormat;
use crate::eval::voting::{majority_vote, rm_weighted_vote};
use crate::train::reasoning::Reasoning;
use crate::train::sft_data_evolution::EvolutionConfig;

/// The kept responses of one round.
pub(crate) struct Kept {
    /// The kept (question, response) conversations.
    pub conversations: Vec<Conversation>,
    /// Responses sampled.
    pub sampled: usize,
    /// Questions with at least one kept response.
    pub questions: usize,
}

/// Samples K responses per question (CoT, or TIR with its tool) and keeps the top m of the
/// accepted ones per question.
#[allow(clippy::too_many_arguments)] // the round's parts; a struct would only rename them
pub(crate) fn sample_and_filter(
    policy: &Policy,
    tokenizer: &Tokenizer,
    questions: &[QaRecord],
    checker: &dyn Verifier,
    rm: Option<&RewardModel>,
    reasoning: &Reasoning,
    config: &EvolutionConfig,
    seed: u64,
) -> Result<Kept> {
    let frozen = policy.frozen_copy()?;
    let mut engine = reasoning.engine(&frozen, tokenizer);
    let format = reasoning.format();
    let params = SamplingParams {
        n: config.samples_per_question,
        temperature: config.temperature,
        top_p: config.top_p,
        seed,
        max_new_tokens: config.max_new_tokens,
        ..SamplingParams::default()
    };
    let bar = crate::run::progress_bar(questions.len() as u64, "sample");
    let mut kept = Kept {
        conversations: Vec::new(),
        sampled: 0,
        questions: 0,
    };
    for (chunk_index, chunk) in questions
        .chunks(config.questions_per_batch.max(1))
        .enumerate()
    {
        let prompts = chunk
            .iter()
            .map(|q| {
                let prompt = messages(format, &q.question, None);
                Ok(tokenizer.encode(&tokenizer.apply_chat_template(&prompt, true)?)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let chunk_params = crate::chunk_seed::chunk_sampling_params(&params, chunk_index);
        let out = engine.generate(&prompts, &chunk_params)?;
        for (group, q) in out.groups.iter().zip(chunk) {
            let texts = group.texts(tokenizer)?;
            kept.sampled += texts.len();
            let scores = match rm {
                Some(rm) => {
                    let pairs: Vec<(&str, &str)> = texts
                        .iter()
                        .map(|t| (q.question.as_str(), t.as_str()))
                        .collect();
                    Some(rm.score_pairs(tokenizer, &pairs, 8)?)
                }
                None => None,
            };
            let accepted = accepted_responses(
                &texts,
                q.gold.as_deref(),
                checker,
                scores.as_deref(),
                config.min_agreement,
            );
            let picked = top_m(&accepted, scores.as_deref(), config.keep_per_question);
            if !picked.is_empty() {
                kept.questions += 1;
            }
            for i in picked {
                kept.conversations.push(Conversation {
                    messages: messages(format, &q.question, Some(&texts[i])),
                });
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(kept)
}

/// The conversation of a question (and its response): the format's system prompt (CoT or TIR),
/// the user turn and, when given, the assistant turn (a TIR response with its output blocks).
fn messages(format: PromptFormat, question: &str, response: Option<&str>) -> Vec<ChatMessage> {
    let mut messages = vec![
        ChatMessage::new("system", format.system_prompt()),
        ChatMessage::new("user", question),
    ];
    if let Some(response) = response {
        messages.push(ChatMessage::new("assistant", response));
    }
    messages
}

/// Indices of the responses accepted as correct: checked against the gold answer when there is
/// one, else those giving the answer of the (RM-weighted) majority vote, provided at least
/// `min_agreement` of the responses give it. Duplicates are dropped.
pub fn accepted_responses(
    texts: &[String],
    gold: Option<&str>,
    checker: &dyn Verifier,
    scores: Option<&[f32]>,
    min_agreement: f64,
) -> Vec<usize> {
    let unique = |i: &usize| !texts[..*i].contains(&texts[*i]);
    match gold {
        Some(gold) => (0..texts.len())
            .filter(|&i| checker.verify(&texts[i], gold, None).is_correct())
            .filter(unique)
            .collect(),
        None => {
            // The extracted answer does not depend on the gold, so an empty one serves.
            let answers: Vec<Option<String>> = texts
                .iter()
                .map(|t| checker.verify(t, "", None).extracted)
                .collect();
            let winner = match scores {
                Some(scores) => rm_weighted_vote(&answers, scores),
                None => majority_vote(&answers),
            };
            let Some(winner) = winner else {
                return Vec::new();
            };
            let agreeing = answers.iter().filter(|a| **a == answers[winner]).count();
            if (agreeing as f64) < min_agreement * texts.len() as f64 {
                return Vec::new();
            }
            (0..texts.len())
                .filter(|&i| answers[i].is_some() && answers[i] == answers[winner])
                .filter(unique)
                .collect()
        }
    }
}

/// The `m` best of `accepted` by score (stable: sample order among equal scores, and without
/// scores), best first.
pub fn top_m(accepted: &[usize], scores: Option<&[f32]>, m: usize) -> Vec<usize> {
    let mut ranked = accepted.to_vec();
    if let Some(scores) = scores {
        ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    }
    ranked.truncate(m);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use mathrl_rewards::Verdict;

    /// Test-only check: the last `\boxed{}` equals the gold.
    struct LastBoxed;

    impl Verifier for LastBoxed {
        fn verify(&self, response: &str, gold: &str, _: Option<&str>) -> Verdict {
            match crate::eval::datasets::last_boxed(response) {
                Some(a) if a == gold => Verdict::correct(a.into()),
                Some(a) => Verdict::incorrect(a.into()),
                None => Verdict::unparseable(None, "no box"),
            }
        }
    }

    fn texts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn with_gold_the_checked_correct_unique_responses_are_accepted() {
        let t = texts(&[
            "\\boxed{4}",
            "\\boxed{5}",
            "x \\boxed{4}",
            "\\boxed{4}",
            "none",
        ]);
        assert_eq!(
            accepted_responses(&t, Some("4"), &LastBoxed, None, 0.0),
            vec![0, 2]
        );
    }

    #[test]
    fn without_gold_the_rm_weighted_vote_picks_the_answer() {
        let t = texts(&["a \\boxed{1}", "b \\boxed{1}", "c \\boxed{2}", "none"]);
        assert_eq!(
            accepted_responses(&t, None, &LastBoxed, None, 0.0),
            vec![0, 1]
        );
        // Two of four agree: enough for half, not for three quarters.
        assert_eq!(
            accepted_responses(&t, None, &LastBoxed, None, 0.5),
            vec![0, 1]
        );
        assert!(accepted_responses(&t, None, &LastBoxed, None, 0.75).is_empty());
        let scores = [-5.0, -5.0, 5.0, 0.0];
        assert_eq!(
            accepted_responses(&t, None, &LastBoxed, Some(&scores), 0.0),
            vec![2]
        );
        assert!(accepted_responses(&texts(&["x", "y"]), None, &LastBoxed, None, 0.0).is_empty());
    }

    #[test]
    fn the_top_m_are_the_best_scored() {
        assert_eq!(
            top_m(&[0, 2, 3], Some(&[1.0, 9.0, 2.0, 3.0]), 2),
            vec![3, 2]
        );
        assert_eq!(top_m(&[0, 2, 3], None, 2), vec![0, 2]);
        assert_eq!(top_m(&[1], Some(&[0.0, 1.0]), 5), vec![1]);
    }
}
