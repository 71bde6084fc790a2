"""The paper's reference numbers, shown beside a run's own: Table 1 (MNIST Acc_i/Vul_i per
layer of the natural and the adversarially trained SmallCNN, max-pool index change, the most
frequent misclassification targets) and the pooling study's Table 5."""

# Table 1 and Section 5.2 of the paper, for the report.
PAPER_TABLE1 = {
    "natural": {"acc": [52.6, 26.3, 21.6, 9.9, 4.3, 3.0, 3.5],
                "vul": [47.4, 26.3, 4.7, 11.7, 5.6, 1.3, -0.5]},
    "adversarially_trained": {"acc": [95.1, 94.0, 93.9, 92.6, 90.1, 90.0, 89.5],
                              "vul": [4.9, 1.1, 0.1, 1.3, 2.5, 0.1, 0.5]},
    "maxpool_index_change": [40.9, 18.1],
    "top_targets": {"0": [6, 39.3], "7": [3, 39.5]},
}


# The paper's single-run numbers (robust accuracy, %).
PAPER_NUMBERS: dict[str, dict[str, dict[str, float]]] = {
    "mnist/smallcnn": {
        "max": {"pgd-40": 89.33, "pgd-100": 81.98, "mpgd-40": 89.76, "fgsm": 95.62},
        "avg": {"pgd-40": 91.56, "pgd-100": 87.48, "mpgd-40": 92.09, "fgsm": 95.72},
    },
    "cifar10/vgg16": {
        "max": {"pgd-20": 46.97, "pgd-100": 45.69, "mpgd-20": 47.06, "fgsm": 50.46},
        "avg": {"pgd-20": 48.25, "pgd-100": 47.09, "mpgd-20": 48.91, "fgsm": 51.64},
    },
    "cifar10/wrn-34-10": {
        "max": {"pgd-20": 53.08, "pgd-100": 51.65, "mpgd-20": 53.94, "fgsm": 57.63},
        "avg": {"pgd-20": 54.68, "pgd-100": 52.59, "mpgd-20": 55.47, "fgsm": 59.92},
    },
}
