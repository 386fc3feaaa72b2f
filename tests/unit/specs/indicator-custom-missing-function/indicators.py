def share_of_outlier(inputs):
    return float((inputs.current["petal_length_cm"] > 7).mean())
