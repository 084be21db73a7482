def halve(value):
    return value / 2
