"""What the course asks of a network: claims and their verdicts (claim_keys, claim_values, check, truth,
grading), the derivations behind a number (explain_*), typical mistakes, quizzes and their variants, solve,
and worked examples. Reads a Report; never prints."""
