"""unittest tests, one failing (in a helper), one erroring, one passing, one with subtests."""

import unittest


def ratio(a, b):
    return a / b


class TestRatios(unittest.TestCase):
    def setUp(self):
        self.base = 10

    def test_zero(self):
        self.assertEqual(ratio(self.base, 0), 0)

    def test_half(self):
        self.assertEqual(ratio(self.base, 5), 5)

    def test_fine(self):
        self.assertEqual(ratio(4, 2), 2)

    def test_each(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertLess(i, 1)


if __name__ == "__main__":
    unittest.main()
