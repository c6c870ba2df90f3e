#!/usr/bin/perl
# strings.pl: string- and hash-heavy Perl workload for tests/programs.sh.
# Prints summaries and a checksum that depend only on this code (hash
# iteration order is never printed unsorted), so a run under the labyrinth
# preload must print exactly what a plain run prints.
use strict;
use warnings;

my $state = 42;
sub rnd {
    my ($n) = @_;
    $state = ($state * 1103515245 + 12345) % 2147483648;
    return int($state / 65536) % $n;
}

my @alpha = ('a' .. 'z', 'A' .. 'Z', '0' .. '9');
sub word {
    my ($lo, $hi) = @_;
    my $len = $lo + rnd($hi - $lo + 1);
    return join('', map { $alpha[rnd(scalar @alpha)] } 1 .. $len);
}

# 1. Words, counted in a hash, sorted by count then name.
my %count;
my @words;
for my $i (1 .. 120000) {
    my $w = word(1, 4);
    push @words, $w;
    $count{$w}++;
}
my @top = (sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count)[0 .. 4];
print "distinct: ", scalar(keys %count), "\n";
printf "top %-5s %d\n", $_, $count{$_} for @top;

# 2. One long string built, edited with regexes, split again.
my $text = join(' ', @words);
(my $edited = $text) =~ s/([aeiou])/uc($1) x 3/ge;
$edited =~ s/\b(\w)(\w*)\b/$2$1/g;
my @parts = split /\s+/, $edited;
my %len;
$len{length $_}++ for @parts;
print "text: ", length($text), " -> ", length($edited), " chars, ", scalar(@parts), " parts\n";
print "lengths: ", join(',', map { "$_=$len{$_}" } sort { $a <=> $b } keys %len), "\n";

# 3. Nested structures: hash of arrays of hashes, built and torn down.
my %db;
for my $i (0 .. 30000) {
    my $k = 'k' . rnd(2000);
    push @{ $db{$k} }, { id => $i, name => word(3, 12), blob => 'x' x rnd(300) };
    if (rnd(7) == 0) {
        my $victim = 'k' . rnd(2000);
        shift @{ $db{$victim} } if $db{$victim};
    }
}
my ($n, $bytes) = (0, 0);
for my $k (sort keys %db) {
    for my $r (@{ $db{$k} }) {
        $n++;
        $bytes += length($r->{name}) + length($r->{blob});
    }
}
print "db: ", scalar(keys %db), " keys, $n records, $bytes bytes\n";
%db = ();

# 4. sprintf/reverse/substr churn and a checksum.
my $acc = '';
for my $i (1 .. 50000) {
    my $s = sprintf("%08d:%s", $i * 7919 % 100003, $words[$i % @words]);
    $acc .= reverse($s) if $i % 3 == 0;
    substr($acc, 0, 10) = '' if length($acc) > 100000;
}
my $sum = unpack('%32C*', $acc);
print "acc: ", length($acc), " chars, sum $sum\n";
print "checksum: ", unpack('%32C*', $edited), "\n";
