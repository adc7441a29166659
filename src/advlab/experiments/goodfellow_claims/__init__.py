"""Goodfellow, Shlens & Szegedy 2014: the MNIST numbers of Sec. 6-9 and App. A beside advlab's.

- Sec. 6 controls: maxout networks trained on eps-scaled random sign noise or uniform noise
  instead of FGSM examples, attacked with FGSM (`heads.NoiseObjective`);
- Sec. 7: a shallow RBF network (`advlab.models.rbf`), its FGSM error and confidence;
- Sec. 8: the maxout network's FGSM examples shown to softmax regression and the RBF network;
- Sec. 9: an ensemble of maxout networks (the mean of their softmax outputs), FGSM crafted
  against the whole ensemble and against one member;
- App. A: Gaussian "rubbish" samples classified with > 0.5 confidence by the naive maxout, a
  maxout with independent sigmoid outputs, softmax regression and the RBF network, and the
  fooling search (one gradient sign step towards a class), whose figures are CIFAR-10's.

`paper` holds the paper's figures and stated setups as data; `run.goodfellow_claims` trains
(seeded, resumable), measures and returns one row per claim: advlab's figure, the paper's, the
ratio and a verdict (within 1.5x; "setup differs" with the differences computed from the
settings). Nothing here prints; the report is `advlab.report.goodfellow_claims`.
"""

from advlab.experiments.goodfellow_claims.run import ClaimsResult, ClaimsSettings, goodfellow_claims

__all__ = ["ClaimsResult", "ClaimsSettings", "goodfellow_claims"]
