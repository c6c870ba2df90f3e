// work.cc: an allocation-heavy C++ program for tests/programs.sh.
//
// programs.sh compiles it with g++ with and without the labyrinth preload on
// the compiler, and runs it with and without the preload; every run must
// print the same lines. Exercises operator new/delete (sized and aligned
// forms end up in malloc, aligned_alloc and free), the standard containers,
// exceptions (whose objects are allocated with malloc), shared_ptr handed
// between threads, and iostreams. The output depends only on this code.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

std::uint64_t state = 0x2545F4914F6CDD1DULL;

std::uint32_t rnd()
{
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return static_cast<std::uint32_t>(state >> 11);
}

std::string word(unsigned lo, unsigned hi)
{
	std::string w;
	unsigned n = lo + rnd() % (hi - lo + 1);
	for (unsigned i = 0; i < n; i++)
		w += static_cast<char>('a' + rnd() % 26);
	return w;
}

std::uint64_t fnv(std::uint64_t h, const std::string &s)
{
	for (unsigned char c : s) {
		h ^= c;
		h *= 1099511628211ULL;
	}
	return h;
}

struct alignas(64) Cell {
	std::uint64_t v[8];
};

struct alignas(4096) Page {
	unsigned char b[4096];
};

void containers()
{
	std::map<std::string, std::vector<int>> index;
	std::unordered_map<std::string, std::string> um;
	std::set<std::string> seen;
	std::list<std::string> lst;
	std::deque<std::uint32_t> dq;
	for (int i = 0; i < 120000; i++) {
		std::string w = word(1, 12);
		index[w.substr(0, 3)].push_back(i);
		um[w] += w.substr(0, 1 + i % 5);
		seen.insert(w);
		lst.push_back(w);
		dq.push_back(rnd());
		if (lst.size() > 5000)
			lst.pop_front();
		if (dq.size() > 7000) {
			dq.pop_front();
			dq.pop_back();
		}
		if (i % 11 == 0)
			um.erase(word(1, 3));
	}
	std::vector<std::string> v(seen.begin(), seen.end());
	std::sort(v.begin(), v.end(), [](const std::string &a, const std::string &b) {
		return a.size() != b.size() ? a.size() > b.size() : a < b;
	});
	std::uint64_t h = 14695981039346656037ULL;
	for (const auto &s : v)
		h = fnv(h, s);
	std::uint64_t um_bytes = 0;
	for (const auto &kv : um)
		um_bytes += kv.first.size() + kv.second.size();
	std::printf("containers: keys %zu distinct %zu longest %s um %zu/%llu list %zu deque %zu hash %016llx\n",
		    index.size(), seen.size(), v.front().c_str(), um.size(),
		    static_cast<unsigned long long>(um_bytes), lst.size(), dq.size(),
		    static_cast<unsigned long long>(h));
}

void aligned()
{
	std::vector<std::unique_ptr<Cell>> cells;
	std::vector<std::unique_ptr<Page>> pages;
	unsigned misaligned = 0;
	for (int i = 0; i < 20000; i++) {
		cells.emplace_back(new Cell());
		cells.back()->v[i % 8] = static_cast<std::uint64_t>(i);
		if (reinterpret_cast<std::uintptr_t>(cells.back().get()) % 64)
			misaligned++;
		if (i % 50 == 0) {
			pages.emplace_back(new Page());
			pages.back()->b[i % 4096] = 1;
			if (reinterpret_cast<std::uintptr_t>(pages.back().get()) % 4096)
				misaligned++;
		}
		if (i % 3 == 0)
			cells.erase(cells.begin() + static_cast<long>(rnd() % cells.size()));
	}
	std::unique_ptr<Cell[]> arr(new Cell[333]);
	if (reinterpret_cast<std::uintptr_t>(arr.get()) % 64)
		misaligned++;
	std::printf("aligned: cells %zu pages %zu misaligned %u\n", cells.size(), pages.size(), misaligned);
}

struct Oops : std::runtime_error {
	std::vector<std::string> baggage;
	explicit Oops(int i) : std::runtime_error("oops " + std::to_string(i) + std::string(i % 300, '!'))
	{
		for (int j = 0; j < i % 7; j++)
			baggage.push_back(word(5, 40));
	}
};

void thrower(int depth, int i)
{
	std::vector<int> local(static_cast<std::size_t>(depth) * 10, depth);
	if (depth == 0)
		throw Oops(i);
	thrower(depth - 1, i);
}

void exceptions()
{
	std::size_t total = 0, baggage = 0;
	for (int i = 0; i < 20000; i++) {
		try {
			thrower(i % 9, i);
		} catch (const Oops &e) {
			total += std::string(e.what()).size();
			baggage += e.baggage.size();
		}
	}
	std::printf("exceptions: caught, what bytes %zu, baggage %zu\n", total, baggage);
}

void threads()
{
	std::mutex m;
	std::vector<std::shared_ptr<std::string>> shelf;
	std::atomic<std::uint64_t> sum{ 0 };
	auto producer = [&](unsigned id) {
		std::uint64_t s = 1234567 + id;
		for (int i = 0; i < 30000; i++) {
			s = s * 6364136223846793005ULL + 1442695040888963407ULL;
			auto p = std::make_shared<std::string>(static_cast<std::size_t>(s >> 54) + 1,
							       static_cast<char>('a' + id));
			std::lock_guard<std::mutex> g(m);
			shelf.push_back(std::move(p));
		}
	};
	auto consumer = [&]() {
		for (int round = 0; round < 200000; round++) {
			std::shared_ptr<std::string> p;
			{
				std::lock_guard<std::mutex> g(m);
				if (!shelf.empty()) {
					p = std::move(shelf.back());
					shelf.pop_back();
				}
			}
			if (p)
				sum += p->size();
		}
	};
	std::vector<std::thread> ts;
	for (unsigned i = 0; i < 3; i++)
		ts.emplace_back(producer, i);
	ts.emplace_back(consumer);
	for (auto &t : ts)
		t.join();
	for (auto &p : shelf) // whatever the consumer did not take
		sum += p->size();
	shelf.clear();
	std::printf("threads: total string bytes %llu\n", static_cast<unsigned long long>(sum.load()));
}

void streams()
{
	std::ostringstream out;
	for (int i = 0; i < 50000; i++)
		out << i << ':' << word(0, 6) << (i % 10 == 9 ? '\n' : ' ');
	std::istringstream in(out.str());
	std::string line;
	std::size_t lines = 0, longest = 0;
	std::vector<std::function<std::size_t()>> fns;
	while (std::getline(in, line)) {
		lines++;
		longest = std::max(longest, line.size());
		fns.emplace_back([line]() { return line.size(); });
	}
	std::size_t total = 0;
	for (auto &f : fns)
		total += f();
	std::printf("streams: %zu bytes, %zu lines, longest %zu, total %zu\n", out.str().size(), lines,
		    longest, total);
}

} // namespace

int main()
{
	containers();
	aligned();
	exceptions();
	threads();
	streams();
	std::printf("done\n");
	return 0;
}
