"""Experiments that drive the pipeline through its commands, as a user would: throughput
(:mod:`.benchmark`), the science benchmark (:mod:`.science`), the learning curve
(:mod:`.learning_curve`) and the seed's three questions (:mod:`.seed_questions`)."""
