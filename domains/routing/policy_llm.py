"""Routing policy, task-agent variant: Claude routes each ticket. The one file the optimizer edits.

Contract (the sandbox and the scorer enforce it; neither is visible from here):
  fit(train) -> model       train: ticket_id, ts, customer_id, channel, tier, product, priority,
                            subject, body (text), and the label resolved_by.
  decide(model, rows)       the same columns without resolved_by -> one team name per row, in
                            the order of `rows`, from the configured teams.

How it routes: the system prompt below, the hand-written examples and a few examples that fit()
picks from train go to the model once per ticket through `ratchet_llm.complete`, a broker the
parent runs (this file has no network). The model answers `<team> | <reason>`; an answer that
names no team, or a refused request, falls back to a local TF-IDF classifier. Tickets are asked
one at a time: a ticket sharing a prompt with later tickets would be decided with look-ahead.
The model's replies on dev rows are in each experiment's trace (task_agent.dev_reasoning).
Imports: numpy, pandas, scikit-learn, scipy, math and ratchet_llm; no files, no I/O.
Constants marked `# tune:` are searched by the offline proposer; change anything else by hand.
"""
import numpy as np
import pandas as pd
import ratchet_llm
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

SEED = 0

# --- the model's instructions -----------------------------------------------------------
SYSTEM_PROMPT = """You route customer-support tickets to the one team that can resolve them.

Teams and what they resolve:
- billing: invoices, double charges, failed or declined payments, fees, receipts.
- technical: bugs, crashes, errors, outages, the site or app not loading.
- accounts: login, passwords, verification codes, profile or email changes, deleting an account.
- logistics: deliveries, tracking, late or lost packages, wrong addresses.
- returns: returns, refunds, exchanges, damaged items, warranty repairs and replacements.

Tickets contain typos, filler and words from other topics; the subject is usually on topic.
Answer with exactly one line: the team name, a space, a vertical bar, a space, and a reason of
at most twelve words. Example: `billing | card charged twice for one order`.

Examples:
{examples}"""
EXAMPLES = (  # hand-written; fit() adds EXAMPLES_PER_TEAM resolved tickets per team from train
    ("site not loading since morning", "error page timeout again", "technical"),
    ("refund for broken item", "item arrived damaged want to send back", "returns"),
)
EXAMPLES_PER_TEAM = 1     # tune: int 0..4
TEXT_CHARS = 600          # characters of subject and of body sent per ticket
MAX_TOKENS = 60           # tune: choice 40, 60, 120

# --- the local fallback -----------------------------------------------------------------
C = 1.0                   # tune: float 0.01..100.0 log
SUBJECT_WEIGHT = 2        # tune: choice 1, 2, 3


def column(rows, name):
    """A text column, or empty text when the history has none (imported data may lack it)."""
    if name in rows.columns:
        return rows[name].fillna("").astype(str)
    return pd.Series("", index=rows.index)


def text_of(rows):
    return ((column(rows, "subject") + " ") * SUBJECT_WEIGHT + column(rows, "body")).str.lower()


def ticket(subject, body, priority, channel):
    """How one ticket is shown to the model (no id: ids never leave the sandbox)."""
    return (f"subject: {subject[:TEXT_CHARS]}\nbody: {body[:TEXT_CHARS]}\n"
            f"priority: {priority}; channel: {channel}")


def pick_examples(train):
    """The first EXAMPLES_PER_TEAM resolved tickets of each team in train, after a seeded shuffle."""
    picked = [(s, b, t) for s, b, t in EXAMPLES]
    if EXAMPLES_PER_TEAM <= 0:
        return picked
    order = np.random.default_rng(SEED).permutation(len(train))
    shuffled = train.iloc[order]
    subject, body = column(shuffled, "subject"), column(shuffled, "body")
    for team in sorted(shuffled["resolved_by"].astype(str).unique()):
        mask = (shuffled["resolved_by"].astype(str) == team).to_numpy()
        for s, b in list(zip(subject[mask], body[mask]))[:EXAMPLES_PER_TEAM]:
            picked.append((s, b, team))
    return picked


def fit(train):
    vectorizer = TfidfVectorizer(min_df=2, sublinear_tf=True)
    x = vectorizer.fit_transform(text_of(train))
    model = LogisticRegression(C=C, max_iter=2000, random_state=SEED)
    model.fit(x, train["resolved_by"].astype(str))
    shown = "\n\n".join(f"subject: {s}\nbody: {b}\nanswer: {t} | example" for s, b, t in pick_examples(train))
    return {"vectorizer": vectorizer, "model": model, "system": SYSTEM_PROMPT.format(examples=shown),
            "teams": sorted(train["resolved_by"].astype(str).unique())}


def parse_team(answer, teams):
    """The team the answer names before its '|', or None."""
    first = answer.strip().split("\n")[0].split("|")[0].strip().strip("`*.:").lower()
    return first if first in teams else None


def decide(model, rows):
    teams = model["model"].predict(model["vectorizer"].transform(text_of(rows))).astype(object)
    subject, body = column(rows, "subject"), column(rows, "body")
    priority, channel = column(rows, "priority"), column(rows, "channel")
    for i in range(len(rows)):
        content = ticket(subject.iloc[i], body.iloc[i], priority.iloc[i], channel.iloc[i])
        try:
            answer = ratchet_llm.complete(system=model["system"], messages=[{"role": "user", "content": content}],
                                          max_tokens=MAX_TOKENS)
        except RuntimeError:
            continue  # refused or failed: the local classifier's choice stands
        team = parse_team(answer, model["teams"])
        if team is not None:
            teams[i] = team
    return np.asarray(teams, dtype=str)
