"""Szegedy et al. 2013, "Intriguing properties of neural networks", reproduced on MNIST.

- Sec. 3 (units vs directions): the test images that most activate a hidden unit are no more
  coherent than those that most activate a random direction of the same layer.
- Sec. 4.1-4.2, Table 1: the model zoo's train and test errors and the average minimal
  distortion sqrt(sum r^2 / n) to reach a seeded random target label per attacked training
  image (the paper's definition: minimise |r| subject to f(x + r) = l), with the mean over all
  targets and the untargeted minimum beside it.
- Table 2: those adversarial examples fed to every model of the zoo, beside Gaussian noise.
- Tables 3-4: models trained on disjoint halves P1, P2 of the training set, each fed the
  others' adversarial examples (test images), as found and magnified by the paper's factor;
  every row with its baselines on exactly its images.
- Equal-size noise, Sec. 4.3 Lipschitz bounds against observed ratios.

`paper` holds the paper's numbers, `settings` what a run does and returns, `stages` the stages,
`run.szegedy` runs them with a stage cache (`advlab.experiments.cache`). Import from those
modules; this package re-exports nothing (so no submodule imports through a half-built package).
"""
