"""Why residual nets train: experiments on a trained CIFAR net of the degradation sweep.

- `lesion`: Veit, Wilber and Belongie 2016, "Residual networks behave like ensembles of
  relatively shallow networks": test error with blocks deleted (or swapped) at test time.
- `landscape`: Li, Xu, Taylor, Studer and Goldstein 2018, "Visualizing the loss landscape of
  neural nets": training loss around the solution along filter-normalised random directions.
"""
