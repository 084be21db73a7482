import unittest

import greeting


class TestShout(unittest.TestCase):
    def setUp(self):
        self.names = ["ann", "bo"]

    def test_shout(self):
        self.assertEqual(greeting.shout("ann"), "HELLO ANN!")

    def test_each(self):
        for name in self.names:
            with self.subTest(name=name):
                self.assertEqual(greeting.shout(name), f"HELLO {name.upper()}!")

    def test_passes(self):
        self.assertTrue(greeting.shout("x"))
