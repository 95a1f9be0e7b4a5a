// A reader for the YAML subset the *_PluginConfig.yaml files use: block mappings, block sequences, plain
// or quoted scalars, `[]`, comments, and the `---` / `...` markers. Enough for the config test without a
// YAML library; anything outside the subset throws std::runtime_error with the line number.
#pragma once

#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mod_test
{

struct YamlNode
{
    enum class Kind
    {
        kSCALAR,
        kMAP,
        kSEQ
    };
    Kind kind{Kind::kSCALAR};
    std::string scalar;
    std::vector<std::pair<std::string, YamlNode>> map; // in file order
    std::vector<YamlNode> seq;

    bool has(std::string const& key) const
    {
        for (auto const& kv : map)
        {
            if (kv.first == key)
            {
                return true;
            }
        }
        return false;
    }
    YamlNode const& at(std::string const& key) const
    {
        for (auto const& kv : map)
        {
            if (kv.first == key)
            {
                return kv.second;
            }
        }
        throw std::runtime_error("yaml: no key '" + key + "'");
    }
    //! A sequence of scalars as strings (an empty map or scalar "[]" reads as empty).
    std::vector<std::string> strings() const
    {
        std::vector<std::string> out;
        for (auto const& n : seq)
        {
            out.push_back(n.scalar);
        }
        return out;
    }
    std::vector<std::string> keys() const
    {
        std::vector<std::string> out;
        for (auto const& kv : map)
        {
            out.push_back(kv.first);
        }
        return out;
    }
};

class YamlSubsetReader
{
public:
    static YamlNode parseFile(std::string const& path)
    {
        std::ifstream in(path);
        if (!in)
        {
            throw std::runtime_error("yaml: cannot open " + path);
        }
        YamlSubsetReader reader;
        std::string line;
        int32_t number = 0;
        while (std::getline(in, line))
        {
            reader.addLine(line, ++number);
        }
        size_t pos = 0;
        YamlNode root = reader.parse(pos, 0);
        if (pos != reader.mLines.size())
        {
            throw std::runtime_error(
                "yaml: unexpected indentation at line " + std::to_string(reader.mLines[pos].number));
        }
        return root;
    }

private:
    struct Line
    {
        int32_t indent;
        bool item; // a "- " sequence entry marker
        std::string text;
        int32_t number;
    };
    std::vector<Line> mLines;

    static std::string trim(std::string const& s)
    {
        size_t const b = s.find_first_not_of(' ');
        if (b == std::string::npos)
        {
            return "";
        }
        return s.substr(b, s.find_last_not_of(' ') - b + 1);
    }

    //! The first position outside quotes where `match(i)` holds, or npos.
    template <typename Match>
    static size_t findUnquoted(std::string const& s, Match match)
    {
        char quote = 0;
        for (size_t i = 0; i < s.size(); ++i)
        {
            char const c = s[i];
            if (quote != 0)
            {
                quote = c == quote ? 0 : quote;
            }
            else if (c == '"' || c == '\'')
            {
                quote = c;
            }
            else if (match(i))
            {
                return i;
            }
        }
        return std::string::npos;
    }

    static std::string stripComment(std::string const& s)
    {
        size_t const hash = findUnquoted(s, [&s](size_t i) { return s[i] == '#' && (i == 0 || s[i - 1] == ' '); });
        return hash == std::string::npos ? s : s.substr(0, hash);
    }

    static std::string unquote(std::string const& s)
    {
        if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') && s.back() == s.front())
        {
            return s.substr(1, s.size() - 2);
        }
        return s;
    }

    void addLine(std::string const& raw, int32_t number)
    {
        if (raw.find('\t') != std::string::npos)
        {
            throw std::runtime_error("yaml: tab at line " + std::to_string(number));
        }
        std::string const text = stripComment(raw);
        std::string const body = trim(text);
        if (body.empty() || body == "---" || body == "...")
        {
            return;
        }
        int32_t indent = static_cast<int32_t>(text.find_first_not_of(' '));
        std::string rest = body;
        while (rest == "-" || rest.rfind("- ", 0) == 0) // "- - x" and "- key: v" open an item each
        {
            mLines.push_back(Line{indent, true, "", number});
            rest = trim(rest.substr(1));
            indent += 2;
            if (rest.empty())
            {
                return;
            }
        }
        mLines.push_back(Line{indent, false, rest, number});
    }

    //! Split "key: value" (value may be empty); false if the text is not a mapping entry.
    static bool splitKey(std::string const& text, std::string& key, std::string& value)
    {
        size_t const colon = findUnquoted(
            text, [&text](size_t i) { return text[i] == ':' && (i + 1 == text.size() || text[i + 1] == ' '); });
        if (colon == std::string::npos)
        {
            return false;
        }
        key = unquote(trim(text.substr(0, colon)));
        value = trim(text.substr(colon + 1));
        return true;
    }

    static YamlNode scalarNode(std::string const& text)
    {
        YamlNode node;
        if (text == "[]")
        {
            node.kind = YamlNode::Kind::kSEQ;
            return node;
        }
        if (text == "{}")
        {
            node.kind = YamlNode::Kind::kMAP;
            return node;
        }
        if (!text.empty() && (text.front() == '[' || text.front() == '{'))
        {
            throw std::runtime_error("yaml: flow collections other than [] and {} are outside the subset");
        }
        node.scalar = unquote(text);
        return node;
    }

    YamlNode parse(size_t& pos, int32_t indent)
    {
        YamlNode node;
        if (pos >= mLines.size() || mLines[pos].indent < indent)
        {
            return node; // empty value
        }
        int32_t const level = mLines[pos].indent;
        if (mLines[pos].item)
        {
            node.kind = YamlNode::Kind::kSEQ;
            while (pos < mLines.size() && mLines[pos].indent == level && mLines[pos].item)
            {
                ++pos;
                node.seq.push_back(parse(pos, level + 1));
            }
            return node;
        }
        std::string key;
        std::string value;
        if (!splitKey(mLines[pos].text, key, value))
        {
            return scalarNode(mLines[pos++].text);
        }
        node.kind = YamlNode::Kind::kMAP;
        while (pos < mLines.size() && mLines[pos].indent == level && !mLines[pos].item)
        {
            Line const& line = mLines[pos];
            if (!splitKey(line.text, key, value))
            {
                throw std::runtime_error("yaml: expected 'key: value' at line " + std::to_string(line.number));
            }
            ++pos;
            if (!value.empty())
            {
                node.map.emplace_back(key, scalarNode(value));
            }
            else if (pos < mLines.size() && mLines[pos].indent > level)
            {
                node.map.emplace_back(key, parse(pos, level + 1));
            }
            else if (pos < mLines.size() && mLines[pos].indent == level && mLines[pos].item)
            {
                node.map.emplace_back(key, parse(pos, level)); // "key:" followed by "- x" at the same indent
            }
            else
            {
                node.map.emplace_back(key, YamlNode{});
            }
        }
        return node;
    }
};

} // namespace mod_test
